"""Train the province-character classifier on synthetic plates and export it to ONNX.

    python -m training.province --out plates/models/province.onnx [--seed N] [--steps N]

Only synthetic plates (:mod:`training.render`) are seen, so every real development
crop stays held out for the figures in the model card. Each batch is drawn from its own
generator, seeded by (seed, step), in a worker process while the network trains on the
other core: the same seed and step count give the same batches whatever the timing.
The network is a small CNN over the left third of the crop scaled to 32 × 48 (the
province sits there whatever margins the crop was cut with), its features max-pooled; the
class order, the grammar's province alphabet, is written into the ONNX file's metadata.

PyTorch is imported by this script alone; the runtime (:mod:`plates.province`) needs only
ONNX Runtime. ``make train-plates`` installs the one torch version this was built with.
"""

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, Dataset

from overload.plates import load_plate_grammar
from plates.province import INPUT_SIZE, METADATA_KEY, model_input
from training.render import EASY, render_crop

OPSET = 17
"""ONNX opset of the export: ONNX Runtime 1.20 and later run it."""
VALIDATION_SEED_OFFSET = 1_000_003
"""The synthetic validation set is drawn from seed + this (never a training batch)."""
console = Console()


EASY_SHARE = (0.9, 0.3)
"""Share of mildly spoiled crops in a batch at the first step and from CURRICULUM on."""
CURRICULUM = 0.5
"""Share of the steps over which the mild share falls from the first figure to the second."""


class Batches(Dataset):
    """Batch ``k`` of the training: ``size`` crops drawn from generator (seed, k), mildly
    spoiled ones first, then more and more of them fully spoiled (:data:`EASY_SHARE`)."""

    def __init__(self, seed: int, steps: int, size: int, provinces: str):
        self.seed, self.steps, self.size, self.provinces = seed, steps, size, provinces

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        ramp = min(1.0, step / max(1.0, CURRICULUM * self.steps))
        easy = EASY_SHARE[0] + (EASY_SHARE[1] - EASY_SHARE[0]) * ramp
        pairs = [render_crop(rng, self.provinces, EASY if rng.uniform() < easy else None)
                 for _ in range(self.size)]
        x = model_input([p[0] for p in pairs])
        return torch.from_numpy(x), torch.tensor([p[1] for p in pairs], dtype=torch.long)


def block(cin: int, cout: int) -> list[nn.Module]:
    """3 × 3 convolution, batch norm, ReLU."""
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class ProvinceNet(nn.Module):
    """A small CNN whose features are pooled by their maximum over the whole crop.

    The province is the one Chinese character in the left third of a single-row plate, so
    a detector of each province's glyph, taken at its strongest anywhere in that window,
    finds it wherever the crop's margins put it. (Over the whole crop, with a dense head or
    with this one, training sat at chance for hundreds of steps: the 31 glyphs were too
    small a part of a picture full of random serial characters.)
    """

    def __init__(self, classes: int):
        super().__init__()
        self.features = nn.Sequential(
            *block(3, 24), nn.MaxPool2d(2),                       # 16 × 24
            *block(24, 48), nn.MaxPool2d(2),                      # 8 × 12
            *block(48, 96), nn.MaxPool2d(2),                      # 4 × 6
            *block(96, 128), *block(128, 160),
            nn.AdaptiveMaxPool2d(1))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(160, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of crops classified right."""
    model.eval()
    with torch.no_grad():
        right = sum(int((model(x[i:i + 256]).argmax(1) == y[i:i + 256]).sum())
                    for i in range(0, len(x), 256))
    model.train()
    return right / len(x)


def validation_set(seed: int, count: int, provinces: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic crops no training batch contains."""
    rng = np.random.default_rng(seed + VALIDATION_SEED_OFFSET)
    pairs = [render_crop(rng, provinces) for _ in range(count)]
    return (torch.from_numpy(model_input([p[0] for p in pairs])),
            torch.tensor([p[1] for p in pairs], dtype=torch.long))


def train(args: argparse.Namespace, provinces: str) -> tuple[nn.Module, dict[str, str]]:
    """The training loop with progress lines; returns the model and its record."""
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model = ProvinceNet(len(provinces))
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr,
                                                   total_steps=args.steps, pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    val_x, val_y = validation_set(args.seed, args.validation, provinces)
    loader = DataLoader(Batches(args.seed, args.steps, args.batch, provinces), batch_size=None,
                        shuffle=False, num_workers=args.workers, prefetch_factor=4
                        if args.workers else None, persistent_workers=False)
    console.print(f"training {sum(p.numel() for p in model.parameters()):,} parameters, "
                  f"{args.steps} steps × {args.batch} crops, seed {args.seed}, "
                  f"{args.threads} threads, {args.workers} render workers")
    start, seen, right, loss_sum = time.perf_counter(), 0, 0, 0.0
    tick = start
    val_acc = float("nan")
    for step, (x, y) in enumerate(_batches(loader), start=1):
        logits = model(x)
        loss = loss_fn(logits, y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        seen += len(y)
        right += int((logits.argmax(1) == y).sum())
        loss_sum += float(loss.detach()) * len(y)
        if step % args.report_every == 0 or step == args.steps:
            if step % (args.report_every * 5) == 0 or step == args.steps:
                val_acc = evaluate(model, val_x, val_y)
            elapsed = time.perf_counter() - start
            eta = elapsed / step * (args.steps - step)
            console.print(f"step {step:5d}/{args.steps}  loss {loss_sum / seen:.3f}  "
                          f"train acc {right / seen:.3f}  synthetic val acc {val_acc:.3f}  "
                          f"lr {schedule.get_last_lr()[0]:.2e}  "
                          f"{seen / max(time.perf_counter() - tick, 1e-9):.0f} crops/s  "
                          f"elapsed {elapsed / 60:.1f} min  eta {eta / 60:.1f} min")
            seen, right, loss_sum, tick = 0, 0, 0.0, time.perf_counter()
    elapsed = time.perf_counter() - start
    record = {"seed": str(args.seed), "steps": str(args.steps), "batch": str(args.batch),
              "train_seconds": f"{elapsed:.0f}", "synthetic_val_acc": f"{val_acc:.4f}",
              "torch": torch.__version__}
    return model.eval(), record


def _batches(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    yield from loader


def export(model: nn.Module, provinces: str, record: dict[str, str], out: Path) -> None:
    """The model to ONNX (batch size free), the class order and the record in metadata."""
    out.parent.mkdir(parents=True, exist_ok=True)
    width, height = INPUT_SIZE
    dummy = torch.zeros(1, 3, height, width)
    torch.onnx.export(model, (dummy,), str(out), dynamo=False, opset_version=OPSET,
                      input_names=["crops"], output_names=["logits"],
                      dynamic_axes={"crops": {0: "n"}, "logits": {0: "n"}})
    graph = onnx.load(str(out))
    entries = {METADATA_KEY: provinces, "input_size": f"{width}x{height}", **record}
    for key, value in entries.items():
        graph.metadata_props.add(key=key, value=value)
    graph.doc_string = "province character of a single-row plate crop (training)"
    onnx.save(graph, str(out))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--workers", type=int, default=2, help="render processes")
    parser.add_argument("--validation", type=int, default=1000,
                        help="synthetic validation crops")
    parser.add_argument("--report-every", type=int, default=50)
    args = parser.parse_args(argv)
    provinces = load_plate_grammar().provinces
    model, record = train(args, provinces)
    export(model, provinces, record, args.out)
    size = args.out.stat().st_size / 1e6
    console.print(f"wrote {args.out} ({size:.2f} MB); classes {provinces}")


if __name__ == "__main__":
    main()
