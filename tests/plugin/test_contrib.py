"""The shipped NRPE and Icinga 2 definitions only use options the plugin accepts."""

from __future__ import annotations

import re
import shlex

from ldirectord.nagios.options import parse_args
from tests.conftest import ROOT

CONTRIB = ROOT / "contrib" / "nagios"
PLUGIN_PATH = "/usr/lib/nagios/plugins/check_ldirectord_pulse"


def test_nrpe_commands_parse() -> None:
    text = (CONTRIB / "nrpe.d" / "check_ldirectord_pulse.cfg").read_text()
    commands = re.findall(r"^#?command\[(\w+)\]=(.*)$", text, re.M)
    ours = [(name, line) for name, line in commands if "check_ldirectord_pulse" in line]
    assert ours, "no check_ldirectord_pulse command in the NRPE example"
    assert ours[0][0] == "check_ldirectord_pulse"  # the active one is the default instance
    for _, line in ours:
        argv = shlex.split(line)
        assert argv[0] == PLUGIN_PATH
        parse_args(argv[1:])  # raises UsageError on anything the plugin would refuse


def test_icinga2_arguments_are_plugin_options() -> None:
    text = (CONTRIB / "icinga2" / "check_ldirectord_pulse.conf").read_text()
    assert 'command = [ PluginDir + "/check_ldirectord_pulse" ]' in text
    keys = re.findall(r'^\s*"(-[-\w]+)" = \{', text, re.M)
    assert set(keys) == {"-f", "-n", "--rundir", "-w", "-c", "--min-up", "-i", "-t", "-v"}
    sample = {"-f": "/p", "-n": "x", "--rundir": "/run", "-w": "120", "-c": "300",
              "--min-up": "2", "-t": "10"}  # fmt: skip
    argv: list[str] = []
    for key in keys:
        argv += [key, sample[key]] if key in sample else [key]
    argv.remove("-f")
    argv.remove("/p")  # -f and -n/--rundir are alternatives
    parse_args(argv)
    for var in re.findall(r"\$(ldirectord_pulse_\w+)\$", text):
        assert f"vars.{var}" in text or var in {
            "ldirectord_pulse_file",
            "ldirectord_pulse_name",
            "ldirectord_pulse_rundir",
            "ldirectord_pulse_min_up",
            "ldirectord_pulse_timeout",
        }
