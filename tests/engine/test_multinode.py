"""Multi-node ``torchrun``: two gloo "nodes" on this machine, one process each.

Both are started as on two machines (``torchrun --nnodes 2 --nproc_per_node 1 --node_rank
0|1 --rdzv-endpoint 127.0.0.1:PORT``), train the demo model a few steps, then evaluate a fixed
model with sharded prediction. Checked: ranks, node ranks and local ranks; the ranks' data
shards are disjoint; checkpoints and the evaluation are written by rank 0 only (the second node
writes nothing); the sharded metrics equal one process's; a resume with one process says in one
line that the world size changed and carries on.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from owp.cli import main
from owp.data.synthetic import SynthConfig, generate_synthetic_dataset
from owp.engine.inference import evaluate_model
from owp.models.registry import create_model

SCRIPT = """
import json, os, sys
from pathlib import Path

import torch

import owp.engine.trainer as trainer
from owp.cli import main
from owp.engine import dist
from owp.engine.inference import evaluate_model
from owp.models.registry import create_model

data, out = Path(sys.argv[1]), Path(sys.argv[2])
drawn = []


class Recording(trainer.InfiniteSampler):
    def __iter__(self):
        for index in super().__iter__():
            drawn.append(index)
            yield index


trainer.InfiniteSampler = Recording
node = int(os.environ["GROUP_RANK"])
code = main(["train", "--out", str(out / f"run-node{node}"), *sys.argv[3:]])
torch.manual_seed(0)
model = create_model("fcos_owp_tiny", min_size=96, max_size=96)
metrics = evaluate_model(
    model, data / "val.json", data / "val", data / "split.yaml",
    max_dets=(10, 100), batch_size=1, shard=True,
)
seen = {
    "code": code, "rank": dist.get_rank(), "world": dist.get_world_size(),
    "local_rank": dist.get_local_rank(), "node": node, "drawn": drawn, "metrics": metrics,
}
(out / f"rank{dist.get_rank()}.json").write_text(json.dumps(seen))
dist.cleanup()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    generate_synthetic_dataset(
        data, SynthConfig(num_train=8, num_val=4, image_size=96, seed=5, style="flat")
    )
    script = tmp_path / "node.py"
    script.write_text(SCRIPT)
    train_args = [
        "--preset", "demo", "--set", f"data.train={data}", "--set", f"data.val={data}",
        "--set", "data.num_workers=0", "--set", "train.max_iters=3", "--set",
        "train.batch_size=2", "--set", "train.checkpoint_period=2", "--set", "model.min_size=96",
        "--set", "model.max_size=96", "--set", "eval.max_dets=[10, 100]",
    ]  # fmt: skip
    port = free_port()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc_per_node",
                "1",
                "--node_rank",
                str(node),
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                str(script),
                str(data),
                str(tmp_path),
                *train_args,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for node in (0, 1)
    ]
    logs = [node.communicate(timeout=480)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], logs
    seen = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [(s["rank"], s["world"], s["node"], s["local_rank"]) for s in seen] == [
        (0, 2, 0, 0),
        (1, 2, 1, 0),
    ]
    assert all(s["code"] == 0 for s in seen)
    shards = [set(s["drawn"]) for s in seen]
    assert shards[0] and shards[1] and not shards[0] & shards[1]  # 3 steps x 1 image per rank

    run = tmp_path / "run-node0"
    assert sorted(p.name for p in run.glob("*.pt")) == [
        "checkpoint_0000002.pt", "checkpoint_0000003.pt", "last.pt",
    ]  # fmt: skip
    assert (run / "eval" / "metrics.json").is_file()
    assert not (tmp_path / "run-node1").exists()  # the second node writes nothing

    torch.manual_seed(0)
    model = create_model("fcos_owp_tiny", min_size=96, max_size=96)
    single = evaluate_model(
        model, data / "val.json", data / "val", data / "split.yaml", max_dets=(10, 100),
        batch_size=1,
    )  # fmt: skip
    assert seen[0]["metrics"] == json.loads(json.dumps(single))
    assert seen[1]["metrics"] == {}

    capsys.readouterr()
    resume = ["train", "--out", str(run), "--resume", *train_args, "--set", "train.max_iters=4"]
    assert main(resume) == 0
    changed = [line for line in capsys.readouterr().err.splitlines() if "resumes with 1" in line]
    assert len(changed) == 1 and "saved by 2 processes" in changed[0]
