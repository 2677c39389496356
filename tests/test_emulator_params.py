import pytest

from repro_kit.emulator.params import PARAM_SOURCES, EmulatorParams


def test_every_parameter_cites_a_source():
    fields = set(EmulatorParams.__dataclass_fields__)
    assert set(PARAM_SOURCES) == fields
    assert all("Source:" in text for text in PARAM_SOURCES.values())


def test_defaults_from_the_report():
    p = EmulatorParams()
    assert p.resync_batch_size == 20 and p.resync_delay_s == 180


@pytest.mark.parametrize("kwargs, name", [
    ({"upload_latency_s": -0.1}, "upload_latency_s"), ({"resync_batch_size": 2.5}, "resync_batch_size"),
    ({"latency_jitter": 1.5}, "latency_jitter"), ({"prefill": "many"}, "prefill"), ({"nope": 1}, "nope"),
])
def test_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        EmulatorParams.from_kwargs(**kwargs)
