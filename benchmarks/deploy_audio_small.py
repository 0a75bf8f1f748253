"""Deploy check of a trained (small front end) audiocoder + decoder: hw_sim-lif on N test clips, lava-fixed-lif on
M clips, with one and two weight blocks (models/cli_audio.audio_deploy = `snnc audio-deploy`).

    SNNC_DATA=/path/to/datasets python benchmarks/deploy_audio_small.py RUN [N [M [BLOCKS]]]
        N test clips on hw_sim-lif (default 300), M on lava-fixed-lif (default 3; 0 = skip), BLOCKS "1,2"

Features are cached in runs/cache. Last line: JSON with, per weight-block setting and target: passed, matched
within +-1 step per population, failed gates, wall and CPU seconds.
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.cli_audio import audio_deploy  # noqa: E402


def main() -> int:
    run = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    m = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    blocks = [int(b) for b in (sys.argv[4] if len(sys.argv) > 4 else "1,2").split(",")]
    out = {"model": run}
    for wb in blocks:
        for target, clips in (("hw_sim-lif", n), ("lava-fixed-lif", m)):
            if clips < 1:
                continue
            c0, t0 = time.process_time(), time.perf_counter()
            r = audio_deploy(run, clips=clips, targets=(target,), weight_blocks=wb, cache_dir="runs/cache")
            res = {"clips": clips, "passed": r["passed"], "matched_within_1": r["targets"][target]["matched_within_1"],
                   "failed_gates": r["failed_gates"][:4], "wall_s": round(time.perf_counter() - t0, 1),
                   "cpu_s": round(time.process_time() - c0, 1)}
            out.update(cores=r["cores"], chips=r["chips"])
            out[f"{target} blocks={wb}"] = res
            print(target, f"blocks={wb}", json.dumps(res), flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
