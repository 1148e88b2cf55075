"""What makes a seed give the same table on another machine (docs/reproducibility.md): the oneDNN
instruction-set cap condense sets, TensorFlow's thread setting, a profile that resumes as it started."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys

import pytest

from condense.bench.profiles import PROFILES, get_profile, profile_from_json

X86 = platform.machine().lower() in ("x86_64", "amd64")


def _python(code: str, **env) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


@pytest.mark.skipif(not X86, reason="the cap is an x86-64 instruction-set name")
def test_import_condense_caps_onednn_at_avx2_unless_the_user_chose():
    probe = "import os, condense; print(os.environ.get('ONEDNN_MAX_CPU_ISA'), condense.REPRODUCIBLE_CPU_ISA)"
    assert _python(probe) == "AVX2 AVX2"
    assert _python(probe, ONEDNN_MAX_CPU_ISA="ALL") == "ALL AVX2"


def test_a_matrix_product_under_the_cap_reproduces_bitwise_and_agrees_with_uncapped_to_rounding():
    """Same inputs, capped and uncapped: the results agree to float32 rounding (the cap picks
    kernels, it does not change the math) — and a run under the cap reproduces bitwise."""
    code = (
        "import condense, numpy as np, tensorflow as tf\n"
        "rng = np.random.default_rng(0)\n"
        "a = tf.constant(rng.normal(size=(64, 300)).astype('float32'))\n"
        "b = tf.constant(rng.normal(size=(300, 64)).astype('float32'))\n"
        "print(float(tf.reduce_sum(tf.matmul(a, b)).numpy().astype('float64')).hex())\n"
    )
    capped = [_python(code, TF_CPP_MIN_LOG_LEVEL="3") for _ in range(2)]
    assert capped[0] == capped[1], "the same setting reproduces bitwise"
    uncapped = _python(code, TF_CPP_MIN_LOG_LEVEL="3", ONEDNN_MAX_CPU_ISA="ALL")
    assert float.fromhex(uncapped) == pytest.approx(float.fromhex(capped[0]), rel=1e-4, abs=1e-2)


def test_tf_threads_are_fixed_before_the_runtime_starts_and_reported_after():
    out = _python(
        "import tensorflow as tf\n"
        "from condense.train import set_tf_threads\n"
        "first = set_tf_threads(1)\n"
        "tf.constant(1.0) + 1.0\n"
        "later = set_tf_threads(2)\n"
        "print(first['intra_op'], first['applied'], later['intra_op'], later['applied'])\n",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    assert out == "1 True 1 False"


def test_a_profile_round_trips_through_its_json_record():
    for profile in [*PROFILES.values(), get_profile("real", data="physionet2012:x", patience=3)]:
        profile = dataclasses.replace(profile, data=profile.data or "synthetic:10:0")
        assert profile_from_json(profile.to_json()) == profile
    record = PROFILES["smoke"].to_json() | {"nonsense": 1}
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['nonsense'\]"):
        profile_from_json(record)
    with pytest.raises(ValueError, match="Argument `threads` must be an integer >= 1; got threads=0"):
        dataclasses.replace(PROFILES["smoke"], threads=0)
