"""The configuration file: validation, every error with its field path, exit 78, docs in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from edge.cli import main
from edge.config import load_config, parse_config
from edge.schemas import GatewayConfig
from nbedge.errors import EX_CONFIG, ConfigError

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """
[gateway]
id = "gw-1"
site = "site-1"
"""


def test_the_example_config_is_valid() -> None:
    config = load_config(ROOT / "examples" / "gateway.toml")
    assert config.gateway.id == "gw-0001"
    assert config.modbus.devices[0].profile == "eastron_sdm630"
    assert config.uplink is not None
    assert config.uplink.token_file == Path("/var/lib/nbedge/credential")


def test_a_minimal_config_takes_documented_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.store.summary_interval_s == 3600
    assert config.mqtt.port == 1883
    assert config.rules.voltage.tolerance_pct == 10.0
    assert config.uplink is None
    assert config.database_path == Path("/var/lib/nbedge/gateway.db")


def test_wrong_type_and_unknown_key_give_two_errors_with_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(MINIMAL + '\n[mqtt]\nport = "eighteen"\n\n[store]\nbatch_size = 10\n')

    status = main(["config", "check", str(path)])

    err = capsys.readouterr().err
    assert status == EX_CONFIG == 78
    assert "2 error(s)" in err
    assert re.search(r"mqtt\.port: .*valid integer.*'eighteen'", err)
    assert re.search(r"store\.batch_size: unknown key", err)


def test_every_issue_is_reported_not_just_the_first() -> None:
    text = """
[gateway]
id = "has space"

[[modbus.devices]]
name = "m1"
profile = "no_such_meter"
host = "127.0.0.1"
unit_id = 300
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    paths = {issue.path for issue in caught.value.issues}
    assert {"gateway.id", "gateway.site", "modbus.devices.0.unit_id"} <= paths


def test_unknown_profile_names_the_field(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[modbus.devices]]\nname = "m1"\nprofile = "no_such_meter"\nhost = "h"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert [issue.path for issue in caught.value.issues] == ["modbus.devices.0.profile"]


def test_toml_syntax_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("[gateway\nid = 1")
    assert caught.value.issues[0].path == "(syntax)"


def test_missing_file_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(tmp_path / "absent.toml")]) == EX_CONFIG
    assert "cannot read" in capsys.readouterr().err


def test_uplink_needs_exactly_one_credential() -> None:
    text = MINIMAL + '\n[uplink]\nurl = "http://127.0.0.1:9"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert "exactly one of token and token_file" in str(caught.value)


UPLINK = '\n[uplink]\nurl = "{url}"\ntoken_file = "/var/lib/nbedge/credential"\n'


def test_plain_http_to_another_machine_is_refused_at_config_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(MINIMAL + UPLINK.format(url="http://central.example.org:8000"))

    assert main(["config", "check", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err
    assert re.search(r"uplink: .*plain http to another machine.*use https://", err)
    assert "allow_insecure = true" in err


@pytest.mark.parametrize(
    "url",
    [
        "https://central.example.org",
        "http://127.0.0.1:8000",
        "http://127.8.9.10:8000",
        "http://localhost:8000",
        "http://LOCALHOST",
        "http://[::1]:8000",
    ],
)
def test_https_or_this_machine_is_accepted(url: str) -> None:
    config = parse_config(MINIMAL + UPLINK.format(url=url))
    assert config.uplink is not None
    assert config.uplink.ca_file is None


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:8000",
        "http://[fe80::1]:8000",
        "http://localhost.example.org",
        "http://127.0.0.1.nip.io",
        "http://0.0.0.0:8000",
    ],
)
def test_what_only_looks_local_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="plain http to another machine"):
        parse_config(MINIMAL + UPLINK.format(url=url))


def test_allow_insecure_accepts_plain_http_and_a_ca_file_is_a_path() -> None:
    insecure = UPLINK.format(url="http://10.0.0.5:8000") + "allow_insecure = true\n"
    config = parse_config(MINIMAL + insecure)
    assert config.uplink is not None
    assert config.uplink.allow_insecure
    private = UPLINK.format(url="https://10.0.0.5") + 'ca_file = "/etc/nbedge/central-ca.pem"\n'
    config = parse_config(MINIMAL + private)
    assert config.uplink is not None
    assert config.uplink.ca_file == Path("/etc/nbedge/central-ca.pem")


def test_duplicate_device_names_are_refused() -> None:
    device = '\n[[modbus.devices]]\nname = "m1"\nprofile = "eastron_sdm630"\nhost = "h"\n'
    with pytest.raises(ConfigError, match="device names must be unique: m1"):
        parse_config(MINIMAL + device + device)


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        nested = [
            a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if nested:
            keys.extend(_keys(nested[0], path + "."))
        else:
            keys.append(path)
    return keys


def test_every_config_key_is_documented_and_every_documented_key_exists() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_.]+)` \|", doc, flags=re.MULTILINE))
    in_code = set(_keys(GatewayConfig))
    assert in_code - documented == set(), "keys missing from docs/configuration.md"
    assert documented - in_code == set(), "docs/configuration.md names keys the code lacks"


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "config", "demo", "central", "sim", "users"):
        assert re.search(rf"^\s+{command}\s", out, flags=re.MULTILINE), command


def test_errors_never_echo_a_secret() -> None:
    text = MINIMAL + "\n[mqtt]\npassword = 12345\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert "mqtt.password" in str(caught.value)
    assert "12345" not in str(caught.value)


MODEL_DEVICES = """
[[modbus.devices]]
name = "main"
profile = "eastron_sdm630"
host = "127.0.0.1"

[[modbus.devices]]
name = "flat"
profile = "eastron_sdm120"
host = "127.0.0.1"
unit_id = 2
"""


def test_model_meters_must_be_points_of_configured_devices_and_counters() -> None:
    text = (
        MINIMAL
        + '[site]\ntimezone = "Europe/Paris"\ncountry = "FR"\n'
        + MODEL_DEVICES
        + '[[models.demand]]\nname = "b"\nmeters = ["main:import_energy", "nowhere:x"]\n'
        + '[[models.anomaly]]\nmeter = "main:voltage_l1"\n'
        + '[[models.anomaly]]\nmeter = "main:import_enrgy"\n'
        + '[[models.dwellings]]\nname = "f"\n'
        + 'meters = ["flat:import_energy", "main:import_energy"]\n'
    )
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    issues = {issue.path: issue.message for issue in raised.value.issues}
    assert "not a device" in issues["models.demand.0.meters.1"]
    assert "a gauge, a counter is needed" in issues["models.anomaly.0.meter"]
    assert "has no point 'import_enrgy'" in issues["models.anomaly.1.meter"]
    assert "at most one electricity" in issues["models.dwellings.0.meters"]


def test_site_and_trusted_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown time zone"):
        parse_config(MINIMAL + '[site]\ntimezone = "Europe/Atlantis"\n')
    with pytest.raises(ConfigError, match=r"trusted_keys\.0: a public key starts with"):
        parse_config(MINIMAL + '[models]\ntrusted_keys = ["ssh-ed25519 AAAA"]\n')
    config = parse_config(
        MINIMAL
        + MODEL_DEVICES
        + '[[models.dwellings]]\nname = "f"\nmeters = ["flat:import_energy"]\n'
    )
    assert config.models.enabled
    assert config.models.min_history_days == 14
    assert config.models.dwellings[0].respond == "within_3h"


def test_a_dwelling_responds_within_3h_or_calibrated() -> None:
    dwelling = MINIMAL + MODEL_DEVICES + '[[models.dwellings]]\nname = "f"\n'
    dwelling += 'meters = ["flat:import_energy"]\n'
    config = parse_config(dwelling + 'respond = "calibrated"\n')
    assert config.models.dwellings[0].respond == "calibrated"
    with pytest.raises(ConfigError) as raised:
        parse_config(dwelling + 'respond = "soon"\n')
    issues = {issue.path: issue.message for issue in raised.value.issues}
    assert "'within_3h' or 'calibrated'" in issues["models.dwellings.0.respond"]


BLE = (
    MINIMAL
    + """
[[ble.sensors]]
name = "entrance"
mac = "a4:c1:38:00:00:01"
bind_key = "231d39c1d7cc1ab1aee224cd096db932"

[[ble.sensors]]
name = "bike-store"
mac = "A4:C1:38:00:00:02"
"""
)


def test_ble_sensors_with_and_without_a_key(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(BLE)
    path.chmod(0o640)
    config = load_config(path)
    entrance, bikes = config.ble.sensors
    assert entrance.mac == "A4:C1:38:00:00:01"
    assert entrance.key_bytes == bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
    assert bikes.key_bytes is None
    assert "231d39c1" not in repr(config)
    assert (entrance.held_open_s, entrance.silent_s, entrance.low_battery_pct) == (600, 21600, 20)


@pytest.mark.parametrize("mode", [0o644, 0o660, 0o604])
def test_a_file_with_bind_keys_that_others_can_read_or_change_is_refused(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(BLE)
    path.chmod(mode)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    (issue,) = error.value.issues
    assert issue.path == "ble.sensors"
    assert f"chmod 640 {path}" in issue.message
    # Without a key the same file is fine.
    path.write_text(BLE.replace('bind_key = "231d39c1d7cc1ab1aee224cd096db932"\n', ""))
    assert load_config(path).ble.has_keys is False


def test_a_bad_bind_key_is_named_without_being_shown() -> None:
    text = BLE.replace("231d39c1d7cc1ab1aee224cd096db932", "231d39c1d7cc1ab1aee224cd096db93Z")
    with pytest.raises(ConfigError) as error:
        parse_config(text)
    (issue,) = error.value.issues
    assert issue.path == "ble.sensors.0.bind_key"
    assert "32 hexadecimal characters" in issue.message
    assert "231d39c1" not in str(error.value)


def test_sensor_names_must_differ_from_each_other_and_from_modbus_devices() -> None:
    with pytest.raises(ConfigError, match="sensor macs must be unique"):
        parse_config(BLE.replace("A4:C1:38:00:00:02", "A4:C1:38:00:00:01"))
    clash = (
        BLE
        + '[[modbus.devices]]\nname = "entrance"\nprofile = "eastron_sdm120"\nhost = "10.0.0.5"\n'
    )
    with pytest.raises(ConfigError, match="share names: entrance"):
        parse_config(clash)


def test_errors_of_checks_across_keys_do_not_echo_the_section_and_its_keys() -> None:
    clash = (
        BLE
        + '[[modbus.devices]]\nname = "entrance"\nprofile = "eastron_sdm120"\nhost = "10.0.0.5"\n'
    )
    for text in (clash, BLE.replace("A4:C1:38:00:00:02", "A4:C1:38:00:00:01")):
        with pytest.raises(ConfigError) as error:
            parse_config(text)
        assert "231d39c1" not in str(error.value)
        assert "231d39c1" not in repr(error.value.issues)
