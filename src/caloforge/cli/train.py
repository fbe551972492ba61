"""``caloforge train``: train the 3DGAN on an HDF5 shower file (wraps caloforge.gan.train.train),
or ``--export-default RUN_DIR``: install a run's best (or ``--epoch``) generator as the package
default (wraps caloforge.gan.ship.export_default)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from caloforge.cli._common import fraction_below, positive_float, positive_int, seed_int
from caloforge.errors import UserError


def _floats(text: str, n: int, what: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"{what} {text!r}: expected {n} comma-separated numbers") from None
    if len(vals) != n:
        raise UserError(f"{what} {text!r}: expected {n} comma-separated numbers")
    return vals


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train", help="train the conditional 3D GAN (or export a run as the shipped default)",
        description="Train the 3DGAN generator/discriminator on a 3DGAN-layout HDF5 file. "
                    "Checkpoints every epoch in OUTPUT/checkpoints, per-epoch generators in "
                    "OUTPUT/generators, metrics in OUTPUT/metrics.jsonl, best generator by the "
                    "3DGAN metric (needs --validation) in OUTPUT/best.safetensors. "
                    "Multi-process: torchrun --nproc-per-node N -m caloforge train ...",
    )
    p.add_argument("--data", help="training showers (HDF5, 3DGAN layout, 25x25x25)")
    p.add_argument("--output", help="run directory")
    p.add_argument("--epochs", type=positive_int, default=30, help="total epochs (default 30)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="per process (default 128)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--validation", help="held-out MC file for the per-epoch 3DGAN metric")
    p.add_argument("--validation-events", type=positive_int, default=5000,
                   help="events of the validation file used (default 5000)")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (0..2**64-1; default 0)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="default: cuda when available, else cpu")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast (AMX on CPU; the generator's first conv stays fp32)")
    p.add_argument("--architecture", choices=("3dgan", "phase"), default="3dgan",
                   help="3dgan: the reference CERN 3DGAN (the case study's model); phase: the "
                        "co-designed sub-pixel architecture (docs/gan.md). Options not given take "
                        "the architecture's recipe defaults")
    p.add_argument("--optimizer", choices=("rmsprop", "adam"), default=None,
                   help="default: rmsprop (3dgan), adam (phase)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="generator learning rate (default 1e-3 for 3dgan, 5e-4 for phase)")
    p.add_argument("--lr-d", type=positive_float, default=None,
                   help="discriminator learning rate (default --lr for 3dgan, 2e-4 for phase)")
    p.add_argument("--lr-decay", type=positive_float, default=None,
                   help="per-epoch learning-rate factor (default 1 for 3dgan, 0.95 for phase)")
    p.add_argument("--adv-weight", type=positive_float, default=0.3,
                   help="phase: weight of the adversarial generator loss (default 0.3)")
    p.add_argument("--r1-gamma", type=float, default=10.0,
                   help="phase: R1 penalty on real inputs (default 10; 0 = off)")
    p.add_argument("--ring-weight", type=float, default=1.0,
                   help="phase: relative weight of the transverse ring-shape loss (default 1)")
    p.add_argument("--no-sparse-head", action="store_true",
                   help="phase: one log-energy channel instead of the sparse head that draws "
                        "each cell's occupancy and energy apart (docs/gan.md)")
    p.add_argument("--no-layer-occupancy", action="store_true",
                   help="phase (sparse head + library): the cells' occupancy does not follow "
                        "the sampled layer energy (docs/gan.md)")
    p.add_argument("--spectrum-weight", type=float, default=3.0,
                   help="phase: relative weight of the cell-energy spectrum loss (default 3)")
    p.add_argument("--joint-weight", type=float, default=0.0,
                   help="phase: relative weight of the loss on how the hits and the size move "
                        "together (caloforge.gan.joint; default 0 = off)")
    p.add_argument("--layer-library", metavar="H5",
                   help="phase: MC file whose layer energies the generator samples (default: "
                        "the training data; best: one simulated at 64 energies equally spaced "
                        "in ln E, see docs/gan.md)")
    p.add_argument("--no-layer-library", action="store_true",
                   help="phase: the network makes the layer energies itself (no library)")
    p.add_argument("--init-generator", metavar="SAFETENSORS",
                   help="phase: start a fresh run from these generator weights")
    p.add_argument("--grad-clip", type=float, default=10.0,
                   help="phase: generator gradient-norm clip (default 10; 0 = off)")
    p.add_argument("--loss-weights", default="2,0.1,0.1",
                   help="BCE,energy-MAPE,ECAL-sum-MAPE weights (default 2,0.1,0.1)")
    p.add_argument("--aux-weight", type=float, default=None,
                   help="3dgan: weight of the profile-matching loss (default 0: reference recipe); "
                        "phase: weight of the per-energy feature mean/width loss (default 10)")
    p.add_argument("--aux-groups", type=positive_int, default=None,
                   help="energy groups of the auxiliary loss per batch (default 4 / 8)")
    p.add_argument("--shower-prior", action="store_true",
                   help="multiply the generator output by the training data's mean shower x E/100 "
                        "(the network learns the correction; see docs/gan.md)")
    p.add_argument("--gen-steps", type=positive_int, default=2, help="G steps per D step (default 2)")
    p.add_argument("--adv-every", type=positive_int, default=1,
                   help="train D / use adversarial terms every k-th batch (default 1)")
    p.add_argument("--flip-prob", type=fraction_below(0.5), default=0.05,
                   help="label flip probability, in [0, 0.5) (default 0.05)")
    p.add_argument("--image-scale", type=positive_float, default=100.0,
                   help="internal units = GeV x this (default 100)")
    p.add_argument("--max-events", type=positive_int, default=None,
                   help="use only the first N events of --data")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads per process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--bn-recalibration", type=positive_int, default=16,
                   help="batches of 64 used to re-estimate BatchNorm statistics of the "
                        "evaluated/saved generator each epoch (default 16)")
    p.add_argument("--log-every", type=int, default=0,
                   help="also write running losses to OUTPUT/train.log every k batches")
    p.add_argument("--export-default", metavar="RUN_DIR",
                   help="install RUN_DIR's best generator as the package default and exit")
    p.add_argument("--epoch", type=positive_int, default=None,
                   help="with --export-default: that epoch's generator instead of the best")
    p.add_argument("--test-data", help="with --export-default: independent MC file for the card")
    p.add_argument("--floor-data", help="with --export-default: second MC file for the MC-vs-MC floor")
    p.add_argument("--reproduce", help="with --export-default: the command line to record in the card")
    p.add_argument("--install-dir", metavar="DIR",
                   help="with --export-default: install there instead of the package default "
                        "(then CALOFORGE_DEFAULT_MODEL_DIR=DIR makes it the default to try)")
    p.add_argument("--calibrate-with", metavar="H5", nargs="+",
                   help="with --export-default: calibrate the sparse prior's per-cell hit "
                        "probabilities and energies against these MC files first (not the "
                        "test data; docs/gan.md)")
    p.add_argument("--calibration-match", default="auto", metavar="MODE",
                   help="with --calibrate-with: what each cell's energies match (layer: mean ln "
                        "E, and the spread, skewness and layer-energy slope of its share of the "
                        "layer's energy; shape: mean, spread and skewness of ln E; both: mean "
                        "ln E and mean E; hits: only the occupancy couplings of the hits per "
                        "layer; halo: only the far halo's energies and spreads where its cells "
                        "are too rarely hit for the other modes; depth: the core's shares fitted "
                        "on the layer's energy and the shower's depth; auto, the default: layer "
                        "where the model has the layer-energy coupling, else shape; docs/gan.md)")
    p.add_argument("--calibration-passes", type=positive_int, default=6,
                   help="with --calibrate-with: fixed-point passes (default 6)")
    p.add_argument("--export-library", metavar="H5", nargs="+",
                   help="with --export-default: replace the phase generator's layer-energy "
                        "library by one built from these MC files (pooled; e.g. 'caloforge "
                        "simulate --energies' at the library's energies) before calibrating; a "
                        "bigger library repeats fewer layer-energy vectors (docs/gan.md)")
    p.add_argument("--library-entries", type=positive_int, default=1280, metavar="N",
                   help="with --export-library: events kept per library energy (default 1280)")
    p.add_argument("--validation-output", metavar="DIR",
                   help="with --export-default: keep the card's validation report and plots there")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    if args.export_default:
        from caloforge.gan.calibrate import check_settings
        from caloforge.gan.ship import export_default, summary_lines

        check_settings(args.calibration_match, args.calibration_passes,
                       ("--calibration-match", "--calibration-passes"))
        card = export_default(args.export_default, epoch=args.epoch, test_data=args.test_data,
                              floor_data=args.floor_data, reproduce=args.reproduce,
                              dest=args.install_dir, validation_dir=args.validation_output,
                              calibrate_with=args.calibrate_with,
                              calibration_match=args.calibration_match,
                              calibration_passes=args.calibration_passes,
                              library_files=args.export_library,
                              library_entries=args.library_entries)
        print("\n".join(summary_lines(card)))
        return 0
    if not args.data or not args.output:
        raise UserError("--data and --output are required (or --export-default RUN_DIR)")
    from caloforge.gan.resume import removing_created_dirs
    from caloforge.gan.steps import RECIPE_DEFAULTS
    from caloforge.gan.train import TrainConfig, train
    from caloforge.iocheck import check_io

    check_io(inputs=[args.data, args.validation, args.layer_library, args.init_generator],
             dirs={args.output: ("checkpoints", "generators", "best.*", "metrics.jsonl",
                                 "train.log")})

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    recipe = dict(RECIPE_DEFAULTS[args.architecture])
    for name in ("optimizer", "lr", "lr_d", "lr_decay", "aux_weight", "aux_groups"):
        if getattr(args, name) is not None:
            recipe[name] = getattr(args, name)
    cfg = TrainConfig(
        architecture=args.architecture, betas=recipe["betas"], adv_weight=args.adv_weight,
        r1_gamma=args.r1_gamma, grad_clip=args.grad_clip, ring_weight=args.ring_weight,
        spectrum_weight=args.spectrum_weight, joint_weight=args.joint_weight,
        sparse_head=not args.no_sparse_head,
        layer_occupancy=not args.no_layer_occupancy,
        layer_energies=not args.no_layer_library, layer_library=args.layer_library,
        init_generator=args.init_generator,
        data=args.data, output=args.output, epochs=args.epochs, batch_size=args.batch_size,
        seed=args.seed, validation=args.validation, validation_events=args.validation_events,
        device=device, bf16=args.bf16, resume=args.resume, optimizer=recipe["optimizer"],
        lr=recipe["lr"], lr_d=recipe["lr_d"], lr_decay=recipe["lr_decay"],
        loss_weights=_floats(args.loss_weights, 3, "--loss-weights"),  # type: ignore[arg-type]
        aux_weight=recipe["aux_weight"], aux_groups=recipe["aux_groups"],
        shower_prior=args.shower_prior, gen_steps=args.gen_steps,
        adv_every=args.adv_every, flip_prob=args.flip_prob, image_scale=args.image_scale,
        max_events=args.max_events, threads=args.threads, progress=not args.no_progress,
        log_every=args.log_every, bn_recalibration_batches=args.bn_recalibration,
    )
    with removing_created_dirs(args.output):
        res = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(json.dumps({"output": str(res.output), "epochs_done": res.epochs_done,
                      "best_epoch": res.best_epoch, "best_metric": res.best_metric,
                      "wall_seconds": round(res.wall_seconds, 1)}))
    return 0
