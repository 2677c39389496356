from repro_kit.cli import main

raise SystemExit(main())
