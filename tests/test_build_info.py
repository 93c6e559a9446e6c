import json
import os
import subprocess
import sys

import picoface
from picoface import _core


def test_version_and_build_info():
    info = picoface.build_info()
    assert info["version"] == picoface.__version__
    assert info["isa_compiled"][0] == "scalar"
    assert info["isa_selected"] in info["isa_supported"]
    assert set(info["isa_supported"]) <= set(info["isa_compiled"])
    assert info["pybind11"].count(".") == 2
    assert info["compiler"]


def test_best_isa_selected_by_default():
    # The selection is made at import from CPU features: the last supported level wins.
    env = {k: v for k, v in os.environ.items() if k != "PICOFACE_ISA"}
    out = subprocess.run([sys.executable, "-m", "picoface", "info", "--json"], env=env,
                         capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["isa_selected"] == info["isa_supported"][-1]


def test_picoface_isa_env_forces_lower_level():
    for isa in _core.supported_isas():
        env = dict(os.environ, PICOFACE_ISA=isa)
        out = subprocess.run([sys.executable, "-m", "picoface", "info", "--json"], env=env,
                             capture_output=True, text=True, check=True)
        assert json.loads(out.stdout)["isa_selected"] == isa


def test_picoface_isa_env_rejects_unknown_name():
    env = dict(os.environ, PICOFACE_ISA="avx9000")
    out = subprocess.run([sys.executable, "-c", "import picoface"], env=env,
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "unknown ISA 'avx9000'" in out.stderr


def test_set_isa_round_trip():
    before = picoface.get_isa()
    try:
        for isa in picoface.supported_isas():
            picoface.set_isa(isa)
            assert picoface.get_isa() == isa
    finally:
        picoface.set_isa(before)
