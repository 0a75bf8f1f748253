"""Training speed of the spiking audiocoder (58,500-2,048-196, T = 30, batch 50): seconds per epoch of the 2,700
FSDD training clips (54 batches).

The real cochleagram features (cached in ``--feature-cache``) and random 0/1 targets of the paper's density (0.41)
are used; a fresh seeded network (U(-0.01, 0.01)) trains ``--warmup`` untimed batches (numba compilation), then
``--batches`` batches are timed (Bernoulli encoding included) and scaled to 54 batches. For each trace window
(30 = the exact trace of the online rule, the default of ``snnc train audio``; 1 = the current spike only) wall and
CPU time (process_time) are reported, the mean and the minimum over the timed batches; on a busy machine compare
the minimum CPU time. The issue's budget: <= 120 s per epoch on 2 cores.

    SNNC_DATA=/path/to/datasets python benchmarks/train_speed_audio.py [--threads 2] [--batches 5] [--windows 1,30]

Last line: JSON with ``seconds_per_epoch`` {window: wall s}, ``cpu_seconds_per_epoch`` {window: CPU s} (means) and
``min_cpu_seconds_per_epoch`` {window: CPU s of the fastest batch x 54}.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EPOCH_CLIPS = 2700
BATCH = 50


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="numba threads (default 2, capped by NUMBA_NUM_THREADS)")
    ap.add_argument("--batches", type=int, default=5, help="timed batches per configuration")
    ap.add_argument("--warmup", type=int, default=1, help="untimed batches first (compilation)")
    ap.add_argument("--windows", default="30,1", help="comma-separated trace windows in steps (30: exact)")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--audio-rate", type=int, default=12500, choices=(12500, 8000))
    ap.add_argument("--feature-cache", default="runs/cache", help="cochleagram cache folder")
    ap.add_argument("--data-dir", default=None, help="folder holding fsdd/ (default $SNNC_DATA)")
    args = ap.parse_args(argv)
    if args.batches < 1 or args.warmup < 0 or args.threads < 1:
        ap.error("--batches and --threads must be >= 1, --warmup >= 0")

    import numba
    import numpy as np

    from models.audio_model import encode_clip
    from models.audio_online import Workspace, online_batch_sparse
    from models.audio_trainer import init_weights
    from models.cochleagram import FeatureSpec, load_features
    from models.rate_online import OnlineRule

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    spec = FeatureSpec(args.audio_rate)
    fs = load_features("train", spec, data_dir=args.data_dir, cache_dir=args.feature_cache)
    steps, n_code = 30, 196
    res, cpu_res, min_cpu, ev = {}, {}, {}, {}
    for window in (int(w) for w in args.windows.split(",")):
        rng = np.random.default_rng(0)
        w1t, w2 = init_weights(spec.n_inputs, args.hidden, n_code, 0.01, rng)
        rule = OnlineRule(lr=5e-5, n_shrink=float(spec.n_inputs))
        walls, cpus, events = [], [], 0
        work = Workspace()
        for b in range(args.warmup + args.batches):
            rows = rng.choice(len(fs), BATCH, replace=False)
            tgt = (rng.random((steps, BATCH, n_code)) < 0.41).astype(np.uint8)
            t0, c0 = time.perf_counter(), time.process_time()
            spikes = [encode_clip(*fs.sparse(n), steps, 0.02, rng) for n in rows]
            r = online_batch_sparse(w1t, w2, spikes, tgt, rule, window, work=work)
            if b >= args.warmup:
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                events += r["events"]
        scale = EPOCH_CLIPS / BATCH
        res[window] = float(np.mean(walls) * scale)
        cpu_res[window] = float(np.mean(cpus) * scale)
        min_cpu[window] = float(np.min(cpus) * scale)
        ev[window] = events / (args.batches * BATCH * steps)
        print(f"trace window {window:>2}: {res[window]:7.1f} s wall, {cpu_res[window]:7.1f} s CPU per epoch (fastest "
              f"batch {min_cpu[window]:.1f}; {ev[window]:.1f} input spikes per clip and step)", flush=True)
    print(json.dumps({"benchmark": "train_speed_audio", "network": f"{spec.n_inputs}-{args.hidden}-{n_code}",
                      "threads": args.threads, "batches_timed": args.batches, "epoch_clips": EPOCH_CLIPS,
                      "seconds_per_epoch": res, "cpu_seconds_per_epoch": cpu_res, "min_cpu_seconds_per_epoch": min_cpu,
                      "input_spikes_per_step": ev, "machine": platform.node(), "python": platform.python_version()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
