"""toolchain/quantize.py: the quantization core shared by the alpha compiler and the steps-graph lowerings.

The alpha chain must compile to the same integers after the core moved out of toolchain/compiler.py: the digests
below were recorded with the compiler before the move (commit a6a64d4) on these seeded random networks."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from test_compiler import random_net
from toolchain import compiler, quantize
from toolchain.compiler import compile_network
from toolchain.errors import CompileError

GOLDEN = {
    ("{}", 0): "330f3c4f0e6d4046f74ba88f8558c3451a3ab2c4e9750fa781f5a365cfd04a92",
    ("{}", 1): "254a74ced2632f1aca1722e1bf0c2fce3f2fc34a7c9a35ef77cf6fbef2fb3ee6",
    ("{'weight_bits': 9}", 0): "1c7af85959c0bc68a51d8a36fdc6008f1a5d51ff28aee206c0f331b82f943541",
    ("{'weight_bits': 9}", 1): "5b4745b325ee71d3eb0f7e85dfae928da6f1cfc27669a2f805208bb87286f7c8",
    ("{'threshold': 'layer'}", 0): "e73cda94592c933e9c9143ae1120c7616b94cbb47bdf408ce5ea528cf0984122",
    ("{'threshold': 'layer'}", 1): "346d722d79aff5b47661e4f0a8bc2d5862f45dc0fc883d9d6fde3e3eab328458",
    ("{'vth': 4000}", 0): "bf1623f379fb1d2e6a78f80dbcba8be5bf26ca4d542fee0075f710d5b54cde44",
    ("{'vth': 4000}", 1): "ab2c97628d8a6ecb1c80aa7d98b015b393be957874d04d084ed5dfe43368fec0",
}


def _digest(cn) -> str:
    h = hashlib.sha256()
    for cl in cn.layers:
        for f in ("weights", "pulse_weights", "pulse_steps", "pulse_source", "vth"):
            h.update(np.ascontiguousarray(getattr(cl, f), dtype=np.int64).tobytes())
        h.update(repr((cl.weight_exp, cl.pulse_weight_exp, cl.du, cl.dv, cl.num_weight_bits)).encode())
    return h.hexdigest()


@pytest.mark.parametrize("kw", [{}, {"weight_bits": 9}, {"threshold": "layer"}, {"vth": 4000}])
@pytest.mark.parametrize("seed", [0, 1])
def test_alpha_chain_compiles_to_the_same_integers_as_before_the_extraction(kw, seed):
    cn = compile_network(random_net(sizes=(30, 12, 30), seed=seed), **kw)
    assert _digest(cn) == GOLDEN[(repr(kw), seed)]


def test_compiler_reexports_the_core_unchanged():
    for name in ("MANTISSA", "VTH_MAX", "UV_MAX", "A_IN_MAX", "DECAY_UNITY", "mantissa_round", "weight_exp_min",
                 "choose_weight_exp"):
        assert getattr(compiler, name) is getattr(quantize, name)


def test_mantissas_exponents_and_decay_codes():
    assert quantize.weight_exp_min(8) == -1 and quantize.weight_exp_min(9) == 0
    np.testing.assert_array_equal(quantize.mantissa_round(np.array([-3.2, 1.0, 2.9, 253.1]), 8), [-4, 0, 2, 254])
    assert quantize.choose_weight_exp(np.array([100.0, -120.0]), "l") == -1      # fits 127 at 2**-1 grid
    assert quantize.choose_weight_exp(np.array([300.0]), "l") == 1               # 300/2 = 150 <= 254
    np.testing.assert_array_equal(quantize.effective_weights(np.array([-256, 254, 6]), -1), [-128, 127, 3])
    np.testing.assert_array_equal(quantize.effective_weights(np.array([-3, 5]), 2), [-12, 20])
    assert quantize.leak_decay_code(0.9) == 410 and quantize.leak_decay_code(1.0) == 0
    with pytest.raises(CompileError, match="weight exponent above the limit"):
        quantize.choose_weight_exp(np.array([1e6]), "l")
