"""Deploy check of a trained (small front end) audiocoder: hw_sim-lif on N test clips, lava-fixed-lif on M.

    SNNC_DATA=/path/to/datasets python benchmarks/deploy_audio_small.py RUN N M     (features cached in runs/cache)

Last line: JSON with cores, chips, DRC violations and per target: passed, matched within +-1 step per population.
"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np
from models.audio_model import load_audiocoder
from models.audio_deploy import deploy_check, chip_resources
from models.cochleagram import FeatureSpec, load_features
ac = load_audiocoder(sys.argv[1])
spec = FeatureSpec(**ac.meta["spec"])
test = load_features("test", spec, data_dir="/work/shared/datasets", cache_dir="runs/cache")
train = load_features("train", spec, data_dir="/work/shared/datasets", cache_dir="runs/cache")
rep_res, chips = chip_resources(ac.n_in, ac.hidden, ac.n_code)
out = {"cores": rep_res.cores, "chips": chips, "violations": list(rep_res.violations)}
for targets, n in ((("hw_sim-lif",), int(sys.argv[2])), (("lava-fixed-lif",), int(sys.argv[3]))):
    c0, t0 = time.process_time(), time.perf_counter()
    # calibration on training clips (the feature set's tail = last training clips), verification on test clips
    from models.cochleagram import FeatureSet
    both = FeatureSet(spec, np.concatenate([test.values, train.values]),
                      np.concatenate([test.offsets, test.offsets[-1] + train.offsets[1:]]),
                      np.concatenate([test.labels, train.labels]), np.concatenate([test.speakers, train.speakers]),
                      np.concatenate([test.indices, train.indices]))
    rep, cs = deploy_check(ac, both, n_clips=n, targets=targets, calibration_clips=50)
    t = rep.targets[0]
    out[targets[0]] = {"clips": n, "passed": rep.passed, "wall_s": time.perf_counter() - t0,
                       "cpu_s": time.process_time() - c0,
                       "matched_within_1": [float(s.fraction[1]) for s in t.layers],
                       "failed_gates": [str(g) for g in rep.gates if not g.passed][:5]}
    print(targets[0], out[targets[0]], flush=True)
print(json.dumps(out))
