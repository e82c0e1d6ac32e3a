"""Device profiles: the shipped maps match the datasheets; bad files are refused in full."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_bridge.modbus.plan import decode_block, plan_reads
from firmware_bridge.modbus.profiles import available_profiles, load_profile, parse_profile
from nbedge.errors import ConfigError

# (name, function, zero-based address, type, unit), from the Eastron Modbus protocol tables:
# register 3xxxx is address xxxx - 1.
SDM630_TABLE = [
    ("voltage_l1", "input", 0x0000, "float32", "V"),  # 30001
    ("voltage_l2", "input", 0x0002, "float32", "V"),  # 30003
    ("voltage_l3", "input", 0x0004, "float32", "V"),  # 30005
    ("current_l1", "input", 0x0006, "float32", "A"),  # 30007
    ("current_l2", "input", 0x0008, "float32", "A"),  # 30009
    ("current_l3", "input", 0x000A, "float32", "A"),  # 30011
    ("power_l1", "input", 0x000C, "float32", "W"),  # 30013
    ("power_l2", "input", 0x000E, "float32", "W"),  # 30015
    ("power_l3", "input", 0x0010, "float32", "W"),  # 30017
    ("total_power", "input", 0x0034, "float32", "W"),  # 30053
    ("frequency", "input", 0x0046, "float32", "Hz"),  # 30071
    ("import_energy", "input", 0x0048, "float32", "kWh"),  # 30073
    ("total_energy", "input", 0x0156, "float32", "kWh"),  # 30343
]
SDM120_TABLE = [
    ("voltage", "input", 0x0000, "float32", "V"),  # 30001
    ("current", "input", 0x0006, "float32", "A"),  # 30007
    ("power", "input", 0x000C, "float32", "W"),  # 30013
    ("frequency", "input", 0x0046, "float32", "Hz"),  # 30071
    ("import_energy", "input", 0x0048, "float32", "kWh"),  # 30073
    ("total_energy", "input", 0x0156, "float32", "kWh"),  # 30343
]


@pytest.mark.parametrize(
    ("profile_name", "table"),
    [("eastron_sdm630", SDM630_TABLE), ("eastron_sdm120", SDM120_TABLE)],
)
def test_shipped_profiles_match_the_datasheet_tables(
    profile_name: str, table: list[tuple[str, str, int, str, str]]
) -> None:
    profile = load_profile(profile_name)
    got = [(p.name, p.function, p.address, p.type, p.unit) for p in profile.points]
    assert got == table
    assert profile.manufacturer == "Eastron"
    assert "Modbus protocol" in profile.source
    assert all(p.word_order == "big" and p.scale == 1.0 for p in profile.points)
    assert profile.max_registers == 80  # Eastron: at most 40 parameters per request
    # Energy registers only grow: their summaries carry the consumption of the period.
    assert profile.counter_names == {"import_energy", "total_energy"}
    assert all(p.kind == "gauge" for p in profile.points if p.unit != "kWh")


def test_the_datasheet_source_is_also_a_comment_at_the_top_of_each_file() -> None:
    folder = Path(__file__).resolve().parents[2] / "firmware_bridge" / "profiles"
    for name in available_profiles():
        text = (folder / f"{name}.toml").read_text()
        assert text.startswith("#")
        assert load_profile(name).source in text.split("[profile]")[0], name


def test_available_profiles_lists_the_shipped_files() -> None:
    assert set(available_profiles()) >= {
        "eastron_sdm630",
        "eastron_sdm120",
        "carlo_gavazzi_em24",
        "advantech_adam6050_water",
    }
    assert available_profiles() == sorted(available_profiles())


def test_a_profile_loads_from_a_path_and_needs_no_code(tmp_path: Path) -> None:
    path = tmp_path / "acme_heat.toml"
    path.write_text(
        """
        # ACME HM-1 heat meter, Modbus map v1.0
        [profile]
        name = "acme_heat"
        manufacturer = "ACME"
        model = "HM-1"
        source = "ACME HM-1 Modbus map v1.0"
        [[points]]
        name = "flow_temperature"
        function = "holding"
        address = 0x0010
        type = "int16"
        unit = "degC"
        scale = 0.1
        [[points]]
        name = "energy"
        function = "holding"
        address = 0x0011
        type = "uint32"
        word_order = "little"
        unit = "kWh"
        scale = 1
        """
    )
    profile = load_profile(str(path))
    assert profile.point_names == ("flow_temperature", "energy")
    assert profile.point("flow_temperature").kind == "gauge"  # the default
    (block,) = plan_reads(profile.points)
    assert (block.function, block.address, block.count) == ("holding", 0x10, 3)
    # -12.3 degC as int16 -123 (0xFF85); 70000 kWh as uint32 0x00011170, low word first.
    values = dict(decode_block(block, [0xFF85, 0x1170, 0x0001]))
    assert values[profile.point("flow_temperature")] == pytest.approx(-12.3)
    assert values[profile.point("energy")] == 70000.0


def test_an_unknown_name_is_a_config_error_that_lists_the_known_profiles() -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile("eastron_sdm999")
    (issue,) = caught.value.issues
    assert issue.path == "profile"
    assert "eastron_sdm630" in issue.message


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile(str(tmp_path / "nope.toml"))
    assert caught.value.issues[0].path == "(file)"


def test_every_schema_issue_is_reported_with_its_field_path() -> None:
    text = """
    [profile]
    name = "Bad Name"
    manufacturer = "X"
    model = "Y"
    [[points]]
    name = "a"
    function = "input"
    address = -1
    type = "float32"
    unit = "V"
    [[points]]
    name = "b"
    function = "coil"
    address = 0x10
    type = "float16"
    unit = "V"
    [[points]]
    name = "c"
    function = "input"
    address = 0x20
    type = "float32"
    unit = "V"
    colour = "red"
    scale = 0
    kind = "rate"
    """
    with pytest.raises(ConfigError) as caught:
        parse_profile(text, source="bad.toml")
    paths = {issue.path for issue in caught.value.issues}
    assert paths == {
        "profile.name",
        "profile.source",
        "points[0].address",
        "points[1].function",
        "points[1].type",
        "points[2].colour",
        "points[2].scale",
        "points[2].kind",
    }
    assert "bad.toml" in str(caught.value)


def test_duplicate_names_and_overlapping_registers_are_refused() -> None:
    text = """
    [profile]
    name = "clash"
    manufacturer = "X"
    model = "Y"
    source = "Z"
    [[points]]
    name = "voltage"
    function = "input"
    address = 0x00
    type = "float64"
    unit = "V"
    [[points]]
    name = "voltage"
    function = "input"
    address = 0x10
    type = "float32"
    unit = "V"
    [[points]]
    name = "current"
    function = "input"
    address = 0x02
    type = "float32"
    unit = "A"
    [[points]]
    name = "setpoint"
    function = "holding"
    address = 0x02
    type = "float32"
    unit = "A"
    """
    with pytest.raises(ConfigError) as caught:
        parse_profile(text)
    issues = {issue.path: issue.message for issue in caught.value.issues}
    assert set(issues) == {"points[1].name", "points[2].address"}  # holding 0x02 is another table
    assert "points[0]" in issues["points[1].name"]
    assert "'voltage'" in issues["points[2].address"]


def test_toml_syntax_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_profile("[profile\nname = ")
    assert caught.value.issues[0].path == "(file)"
    assert "TOML" in caught.value.issues[0].message


def test_a_point_wider_than_the_device_read_limit_is_refused() -> None:
    text = """
    [profile]
    name = "tiny"
    manufacturer = "X"
    model = "Y"
    source = "Z"
    max_registers = 2
    [[points]]
    name = "big"
    function = "input"
    address = 0xFFFE
    type = "float64"
    unit = "Wh"
    """
    with pytest.raises(ConfigError) as caught:
        parse_profile(text)
    assert {i.path for i in caught.value.issues} == {"points[0].address", "points[0].type"}


def test_an_invalid_sentinel_must_fit_an_integer_type() -> None:
    head = '[profile]\nname = "x"\nmanufacturer = "X"\nmodel = "Y"\nsource = "Z"\n'
    point = '[[points]]\nname = "p{n}"\nfunction = "holding"\naddress = {n}\nunit = "V"\n'
    text = head + "".join(
        point.format(n=n) + f"type = {kind!r}\ninvalid = {invalid}\n".replace("'", '"')
        for n, (kind, invalid) in enumerate(
            [("uint16", 0xFFFF), ("float32", 0), ("uint16", 0x10000), ("int16", -1)]
        )
    )
    with pytest.raises(ConfigError) as caught:
        parse_profile(text)
    assert {i.path for i in caught.value.issues} == {"points[1]", "points[2]"}
    fine = parse_profile(head + point.format(n=0) + 'type = "int16"\ninvalid = -1\n')
    assert fine.points[0].invalid == -1


def test_the_configuration_reference_names_every_packaged_profile() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    (row,) = [line for line in doc.splitlines() if line.startswith("| `modbus.devices.profile`")]
    assert [name for name in available_profiles() if f"`{name}`" not in row] == []
