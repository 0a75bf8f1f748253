"""toolchain/quantize.py: the quantization core shared by the alpha compiler and the steps-graph lowerings.

The alpha chain must compile to the same integers after the core moved out of toolchain/compiler.py: the digests
below were recorded with the compiler before the move (commit a6a64d4) on these seeded random networks. The alpha
compiler then moved onto the IR graph (compile_network -> compile_alpha_graph -> toolchain/lower_alpha.py per
layer): GOLDEN_IR pins the options that refactor touched, recorded with the compiler before it (commit 9a1a08f)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from test_calibration import inhibitory_net, sparse_inputs
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

GOLDEN_IR = {
    ("{'compensate_tau': True}", 0): "9e921200b558832adc913975440f6c74b85bf5def7f9850986de0731e96646e1",
    ("{'compensate_tau': True}", 1): "90ce9d8166c5c512cdff705d175a956ea905e90ee7eda95505a4ef8b51fe95e5",
    ("{'max_pulse_copies': 1}", 0): "710b00dfeb25a672adf043a4ac3981714d4e2defddcfa1586990e4e54cc80a86",
    ("{'max_pulse_copies': 1}", 1): "254a74ced2632f1aca1722e1bf0c2fce3f2fc34a7c9a35ef77cf6fbef2fb3ee6",
    ("{'centre': False}", 0): "413bf0001e714070c87c8e43debe7a19e95350d08cdca7390e7e212e644089fc",
    ("{'centre': False}", 1): "30f5dae7689a295284b3b345e8b5ba7c8d205e4949fddb03243f92d3a6c8f254",
    ("{'steps_per_unit': 32}", 0): "c26f7fe9b63a9ae644585a77d452a57981130e5d6028e05ae6acaee07148fddb",
    ("{'steps_per_unit': 32}", 1): "2d036d002f141ce5a08e9aa1f3304c379a7ac31d61a45bf55960f66c81f7166b",
    ("{'weight_bits': 9, 'threshold': 'layer', 'compensate_tau': True, 'max_pulse_copies': 2}", 0):
        "464fac11d8243c809a8ee2fe6ceeacce88ab7018dc6470baaa5de6ecb26add6a",
    ("{'weight_bits': 9, 'threshold': 'layer', 'compensate_tau': True, 'max_pulse_copies': 2}", 1):
        "e711204b604b5321f06f241c3e263e1aa5c010f8969d495cedefdda80f55b070",
}
# calibrated range mode on the wide inhibitory layer of test_calibration (the worst case does not compile there)
GOLDEN_CALIBRATED = {
    ("{'range_margin': 0.5}", 0): "8d7bc4fe62f6268059fa160a6f2577094fc0e5a6735ad35dfdb7960c1d861dd3",
    ("{'range_margin': 0.5, 'threshold': 'layer'}", 0):
        "f10864e8ea3e591721fb3839d0775195cb5f3247cb34dae575429322698cd54a",
    ("{'range_margin': 0.5}", 1): "4afcfa4d388694520708a9af069ef9c594e710d094a29f2948147ff322d4074d",
    ("{'range_margin': 0.5, 'threshold': 'layer'}", 1):
        "f58eb1c98738069a732caa1cbe3a0190ccdd053f49542696a359867f8d125081",
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


@pytest.mark.parametrize("kw", [{"compensate_tau": True}, {"max_pulse_copies": 1}, {"centre": False},
                                {"steps_per_unit": 32},
                                {"weight_bits": 9, "threshold": "layer", "compensate_tau": True,
                                 "max_pulse_copies": 2}])
@pytest.mark.parametrize("seed", [0, 1])
def test_alpha_chain_compiles_to_the_same_integers_as_before_the_ir_lowering(kw, seed):
    cn = compile_network(random_net(sizes=(30, 12, 30), seed=seed), **kw)
    assert _digest(cn) == GOLDEN_IR[(repr(kw), seed)]


@pytest.mark.parametrize("kw", [{"range_margin": 0.5}, {"range_margin": 0.5, "threshold": "layer"}])
@pytest.mark.parametrize("seed", [0, 1])
def test_calibrated_compiles_to_the_same_integers_as_before_the_ir_lowering(kw, seed):
    cn = compile_network(inhibitory_net(seed=seed), range_mode="calibrated",
                         calibration_times=sparse_inputs(20, 300, seed=seed + 1), **kw)
    assert _digest(cn) == GOLDEN_CALIBRATED[(repr(kw), seed)]


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
