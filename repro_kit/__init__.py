"""repro_kit: reproduce, explain and audit the Realm Sync schema-deploy data loss."""

__version__ = "0.1.0"
