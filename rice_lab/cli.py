"""The ``rice-lab`` command line: a thin layer that maps flags onto library calls."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rice_lab.errors import RiceLabError


def _cmd_data_validate(args: argparse.Namespace) -> int:
    from rice_lab.data.zindi import format_problems, scan_zindi

    report = scan_zindi(args.path, check_images=not args.no_images)
    if report.problems:
        print(format_problems(report), file=sys.stderr)
    for warning in report.warnings:  # reported, never fatal: the photos may be two genuine plants
        print(f"warning: {warning}", file=sys.stderr)
    if report.problems and not args.skip_bad:
        return 1
    if args.skip_bad and report.dropped:
        print(f"--skip-bad: dropped {len(report.dropped)} plant(s) with problems, kept "
              f"{len(report.plants)}", file=sys.stderr)
    if len(report.plants) == 0:
        print(f"{report.root}: no usable plants", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def _cmd_data_synth(args: argparse.Namespace) -> int:
    balance = _parse_balance(args.balance)
    from rice_lab.data.synthetic import SynthConfig, synthesize

    config = SynthConfig(plants=args.plants, width=args.width, seed=args.seed,
                         test_fraction=args.test_fraction, class_balance=balance,
                         difficulty=args.difficulty, label_noise=args.label_noise,
                         shortcut=args.shortcut, same_lesion_colours=args.same_lesion_colours,
                         workers=args.workers)
    root = synthesize(args.path, config)
    print(f"wrote {config.plants} plants ({config.width}x{config.height} px) to {root}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from rice_lab.presets import get_preset

    config = get_preset(args.preset, data=str(args.data), out=str(args.out), views=args.views,
                        epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, lr=args.lr,
                        encoder=args.encoder, init=args.init, precision=args.precision,
                        photo_height=args.photo_height, crops={"size": args.crop_size} if args.crop_size else None,
                        swav={k: v for k, v in (("n_prototypes", args.prototypes), ("queue_factor", args.queue_factor),
                                                ("queue_start", args.queue_start)) if v is not None} or None,
                        threads=args.threads, workers=args.workers,
                        checkpoint_every=args.checkpoint_every, resume_every=args.resume_every,
                        pretrained=True if args.pretrained else None, progress=False if args.no_progress else None)
    if args.lr_find:
        from rice_lab.ssl.pretrain import find_lr

        print(f"suggested learning rate: {find_lr(config):.2e}")
        return 0
    from rice_lab.ssl.pretrain import cached_pretrain, pretrain

    run_dir = cached_pretrain(config) if args.if_needed else pretrain(config, resume=args.resume)
    print(f"pre-trained encoder: {run_dir / 'encoder.pt'}")
    return 0


def _one_line(func):
    """Run a fine-tuning command; a RiceLabError becomes one line on stderr and exit code 1."""
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except RiceLabError as err:
            print(f"rice-lab: error: {str(err).splitlines()[0] if str(err) else type(err).__name__}",
                  file=sys.stderr)
            return 1
    return wrapped


@_one_line
def _cmd_finetune(args: argparse.Namespace) -> int:
    from rice_lab.finetune.config import get_preset
    from rice_lab.finetune.train import cached_finetune, finetune

    config = get_preset(args.preset, data=str(args.data), out=str(args.out), encoder=str(args.encoder),
                        pretrained=True if args.pretrained else None, mode=args.mode, epochs=args.epochs,
                        seed=args.seed, labels_fraction=args.labels_fraction, cameras=args.cameras,
                        head=args.head, lr=args.lr, batch_size=args.batch_size, photo_height=args.photo_height,
                        label_smoothing=args.label_smoothing, mixup=args.mixup, arch=args.arch,
                        teacher=None if args.teacher is None else str(args.teacher), min_steps=args.min_steps,
                        shuffled_labels=True if args.shuffled_labels else None,
                        threads=args.threads, workers=args.workers, progress=False if args.no_progress else None)
    run_dir = cached_finetune(config) if args.if_needed else finetune(config, resume=args.resume)
    from rice_lab.runs import load_checkpoint

    kept = load_checkpoint(run_dir / "classifier.pt")
    print(f"classifier: {run_dir / 'classifier.pt'} (epoch {kept['kept_epoch']}: validation fused log loss "
          f"{kept['valid_fused_log_loss']:.3f}, accuracy {kept['valid_fused_accuracy']:.3f}; flip TTA "
          f"{'kept' if kept['tta'] else 'dropped'}; temperature {kept['temperatures']['fused']:.3f})")
    return 0


@_one_line
def _cmd_predict(args: argparse.Namespace) -> int:
    from rice_lab.data.zindi import read_zindi
    from rice_lab.finetune.predictions import FUSED, predict
    from rice_lab.finetune.submission import read_sample, write_submission

    sample = args.sample or args.data / "SampleSubmission.csv"
    read_sample(sample)  # a malformed sample stops here, before any work
    plants = read_zindi(args.data)
    test = plants[plants["split"] == "test"]
    found = predict(args.run, test, calibrated=not args.uncalibrated)
    write_submission(found.plants[FUSED], sample, args.out)
    print(f"wrote {len(test)} plants to {args.out} (fused, TTA {'on' if found.tta else 'off'}, "
          f"temperature {found.temperatures[FUSED]:.3f})")
    return 0


@_one_line
def _cmd_submission_check(args: argparse.Namespace) -> int:
    from rice_lab.finetune.submission import check_submission

    problems = check_submission(args.file, args.sample)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{args.file}: a valid submission")
    return 0


@_one_line
def _cmd_evaluate(args: argparse.Namespace) -> int:
    from rice_lab.finetune.judge import evaluate_run

    report = evaluate_run(args.run, args.data, resamples=args.resamples)
    print(f"{report['split']}: {report['plants']} plants (95 % bootstrap intervals over plants)")
    for view, scores in report["views"].items():
        shown = "  ".join(f"{name} {scores[name]['estimate']:.3f} [{scores[name]['low']:.3f}, "
                          f"{scores[name]['high']:.3f}]" for name in ("accuracy", "log_loss", "log_loss_calibrated"))
        print(f"  {view:<13} {shown}")
    print(f"written: {args.run / 'evaluation.json'}, {args.run / 'evaluation.png'}")
    return 0


def _parse_balance(text: str) -> tuple[float, float, float]:
    """``"1,1,1"`` or ``"blast=2,brown=1,healthy=1"`` -> class weights in CLASSES order."""
    from rice_lab.data.zindi import CLASSES

    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if all("=" in p for p in parts):
            weights = dict((k.strip(), float(v)) for k, v in (p.split("=", 1) for p in parts))
            if set(weights) != set(CLASSES):
                raise ValueError(f"name each of {', '.join(CLASSES)}")
            values = tuple(weights[c] for c in CLASSES)
        else:
            values = tuple(float(p) for p in parts)
        if len(values) != len(CLASSES) or min(values) < 0 or sum(values) <= 0:
            raise ValueError("three non-negative weights, not all zero")
    except ValueError as err:
        raise RiceLabError(f"--balance {text!r}: {err}") from err
    return values  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    """All sub-commands and their flags."""
    parser = argparse.ArgumentParser(prog="rice-lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="generate, validate and inspect Zindi-layout data")
    data_commands = data.add_subparsers(dest="data_command", required=True)

    validate = data_commands.add_parser("validate", help="check a Zindi folder and summarise it")
    validate.add_argument("path", type=Path)
    validate.add_argument("--skip-bad", action="store_true",
                          help="drop plants with problems (each is reported) and go on")
    validate.add_argument("--no-images", action="store_true", help="check csv files and pairing only")
    validate.set_defaults(func=_cmd_data_validate)

    synth = data_commands.add_parser("synth", help="write the synthetic multi-sensor dataset")
    synth.add_argument("path", type=Path)
    synth.add_argument("--plants", type=int, default=600, help="number of plants (train + test)")
    synth.add_argument("--width", "--size", dest="width", type=int, default=128,
                       help="image width in pixels; the height is 4/5 of it (--size: former name)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--test-fraction", type=float, default=0.3)
    synth.add_argument("--balance", default="1,1,1", help="class weights: 'blast=1,brown=1,healthy=1'")
    synth.add_argument("--difficulty", type=float, default=0.5, help="0 (easy) to 1 (hard)")
    synth.add_argument("--label-noise", type=float, default=0.0, help="fraction of flipped train labels")
    synth.add_argument("--shortcut", default=None, choices=["date-stamp"],
                       help="plant a class-correlated artefact in training images only")
    synth.add_argument("--same-lesion-colours", action="store_true",
                       help="draw blast and brown-spot lesions with the same colours (only shapes differ)")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    synth.set_defaults(func=_cmd_data_synth)

    pre = commands.add_parser("pretrain", help="SwAV self-supervised pre-training of an encoder",
                              description="SwAV pre-training; under torchrun, one process per device. "
                                          "No run is ever deleted: --if-needed moves a stale one aside.")
    pre.add_argument("data", type=Path, help="Zindi-layout folder (real or synthetic)")
    pre.add_argument("--preset", default="cpu-tiny",
                     help="cpu-tiny | cpu-small | gpu-paper (paired cameras, rice-lab's recipe) | "
                          "gpu-paper-as-published (RGB only, as the published notebook ran) | gpu-res2next50")
    pre.add_argument("--out", type=Path, required=True, help="run directory to create (or resume)")
    pre.add_argument("--views", choices=["paired", "rgb", "rgnir", "mixed"], default=None,
                     help="which camera each crop comes from (default: the preset's, paired)")
    pre.add_argument("--epochs", type=int, default=None)
    pre.add_argument("--seed", type=int, default=None)
    again = pre.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in --out from its last state")
    again.add_argument("--if-needed", action="store_true",
                       help="reuse a finished run in --out made with these settings and data, resume an "
                            "unfinished one; a run made otherwise (or unreadable) is moved to "
                            "<out>.stale-<UTC time> beside it, never deleted, and a new run starts. "
                            "Output, data path, threads, workers, progress and checkpoint/resume "
                            "intervals never make a run stale")
    pre.add_argument("--batch-size", type=int, default=None, help="per process")
    pre.add_argument("--lr", type=float, default=None)
    pre.add_argument("--encoder", default=None, help="xresnet18/34/50, xresnet-tiny, any timm name")
    pre.add_argument("--crop-size", type=int, default=None, help="side of the large crops, px")
    pre.add_argument("--photo-height", type=int, default=None,
                     help="height photos are decoded to before cropping, px (default: the preset's)")
    pre.add_argument("--prototypes", type=int, default=None, help="K, SwAV's number of prototypes")
    pre.add_argument("--queue-factor", type=int, default=None, help="queue length in batches (0: no queue)")
    pre.add_argument("--queue-start", type=float, default=None,
                     help="share of the run after which the queue fills, then is used")
    pre.add_argument("--pretrained", action="store_true", help="start from timm ImageNet weights")
    pre.add_argument("--init", default=None, help="start the encoder from a local checkpoint or run dir")
    pre.add_argument("--precision", choices=["auto", "fp16", "bf16", "fp32"], default=None)
    pre.add_argument("--checkpoint-every", type=int, default=None, help="steps between encoder snapshots")
    pre.add_argument("--resume-every", type=int, default=None, help="steps between resume states")
    pre.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    pre.add_argument("--workers", type=int, default=None, help="DataLoader worker processes")
    pre.add_argument("--no-progress", action="store_true", help="no progress bar")
    pre.add_argument("--lr-find", action="store_true", help="run fastai's lr_find, print a suggestion, exit")
    pre.set_defaults(func=_cmd_pretrain)

    fine = commands.add_parser("finetune", help="fine-tune a classifier from an encoder, on both cameras",
                               description="Fine-tune a classifier; the kept epoch is the one with the best "
                                           "validation fused log loss. No run is ever deleted.")
    fine.add_argument("data", type=Path, help="Zindi-layout folder (real or synthetic)")
    fine.add_argument("--encoder", required=True, help="a pre-training run directory, or 'random'")
    fine.add_argument("--pretrained", action="store_true",
                      help="with --encoder random: start from timm ImageNet weights (cached only when offline)")
    fine.add_argument("--preset", default="cpu-tiny", help="cpu-tiny | cpu-small | gpu-paper | gpu-res2next50")
    fine.add_argument("--mode", choices=["probe", "discriminative", "full"], default=None,
                      help="probe: frozen body (batch norm too); discriminative: head first, then all with "
                           "lower body rates; full: all at one rate (default: the preset's, full)")
    fine.add_argument("--out", type=Path, required=True, help="run directory to create (or resume)")
    fine.add_argument("--epochs", type=int, default=None)
    fine.add_argument("--seed", type=int, default=None)
    fine.add_argument("--labels-fraction", type=float, default=None,
                      help="share of the training plants whose labels are used (stratified, 2+ per class)")
    fine.add_argument("--cameras", choices=["both", "rgb", "rgnir"], default=None)
    fine.add_argument("--head", choices=["original", "bn-linear", "linear"], default=None)
    fine.add_argument("--arch", default=None, help="network for --encoder random (default: the preset's)")
    fine.add_argument("--lr", type=float, default=None)
    fine.add_argument("--batch-size", type=int, default=None)
    fine.add_argument("--photo-height", type=int, default=None)
    fine.add_argument("--label-smoothing", type=float, default=None)
    fine.add_argument("--mixup", type=float, default=None, help="MixUp alpha (0: off)")
    fine.add_argument("--min-steps", type=int, default=None,
                      help="train at least this many optimiser steps (small label fractions)")
    fine.add_argument("--shuffled-labels", action="store_true",
                      help="train on the training plants' labels permuted (the data-randomisation sanity check)")
    fine.add_argument("--teacher", type=Path, default=None,
                      help="self-distillation: learn this classifier run's soft predictions for the training, "
                           "unlabelled and test photos instead of the labels")
    fine_again = fine.add_mutually_exclusive_group()
    fine_again.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    fine_again.add_argument("--if-needed", action="store_true",
                            help="reuse a finished matching run in --out, resume an unfinished one; a run made "
                                 "otherwise is moved to <out>.stale-<UTC time>, never deleted")
    fine.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    fine.add_argument("--workers", type=int, default=None, help="DataLoader worker processes")
    fine.add_argument("--no-progress", action="store_true", help="no progress bar")
    fine.set_defaults(func=_cmd_finetune)

    pred = commands.add_parser("predict", help="write a submission from a fine-tuning run")
    pred.add_argument("run", type=Path, help="a fine-tuning run directory")
    pred.add_argument("data", type=Path, help="Zindi-layout folder whose test plants are predicted")
    pred.add_argument("--out", type=Path, required=True, help="submission csv to write")
    pred.add_argument("--sample", type=Path, default=None, help="default: DATA/SampleSubmission.csv")
    pred.add_argument("--uncalibrated", action="store_true", help="skip the run's temperature")
    pred.set_defaults(func=_cmd_predict)

    sub = commands.add_parser("submission", help="check a submission file")
    sub_commands = sub.add_subparsers(dest="submission_command", required=True)
    check = sub_commands.add_parser("check", help="one line per problem; exit code 1 if there is any")
    check.add_argument("file", type=Path)
    check.add_argument("--sample", type=Path, required=True, help="the data's SampleSubmission.csv")
    check.set_defaults(func=_cmd_submission_check)

    judge = commands.add_parser("evaluate", help="score a fine-tuning run (test labels where the data has them)")
    judge.add_argument("run", type=Path)
    judge.add_argument("data", type=Path)
    judge.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    judge.set_defaults(func=_cmd_evaluate)

    exp = commands.add_parser("experiment", help="many fine-tuning (or, for bump, pre-training) runs -> tables (CSV) "
                                                 "and a figure",
                              description="Runs live under OUT/runs and are reused or resumed when the command "
                                          "is run again; nothing is deleted. bump: SwAV pre-training runs per "
                                          "queue arm and seed, their loss curves' plateaus and drops. views: "
                                          "SwAV pre-training runs per crop-recipe arm and seed, each read out "
                                          "by disease and background probes.")
    exp.add_argument("name", choices=["label-efficiency", "sensors", "self-distillation", "leakage", "bump", "views"])
    exp.add_argument("data", type=Path, help="Zindi folder (without test labels, 20 %% of its training plants "
                                             "are held out as the test plants)")
    exp.add_argument("--out", type=Path, required=True, help="experiment directory")
    exp.add_argument("--encoder", action="append", default=[], metavar="NAME=RUN",
                     help="an encoder start, repeatable: a pre-training run directory, 'random' or 'imagenet' "
                          "(every experiment but bump needs one)")
    exp.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (label subsets and training)")
    exp.add_argument("--preset", default="cpu-tiny")
    exp.add_argument("--epochs", type=int, default=None, help="epochs of each run (default: the preset's)")
    exp.add_argument("--fractions", type=float, nargs="+", default=None, help="label-efficiency, views: labelled shares")
    exp.add_argument("--modes", nargs="+", choices=["probe", "discriminative", "full"],
                     default=["probe", "discriminative"], help="label-efficiency: fine-tuning modes")
    exp.add_argument("--min-steps", type=int, default=200, help="label-efficiency: least optimiser steps per run")
    exp.add_argument("--arms", nargs="+", default=None, metavar="ARM",
                     help="bump: queue-half, queue-quarter and/or queue-never (default: all three); views: "
                          "today, swap, noise, leaf-centred, rgb, rgb+swap (default: all)")
    exp.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    exp.set_defaults(func=_cmd_experiment)

    dyn = commands.add_parser("dynamics", help="progress measures at every checkpoint of a pre-training run",
                              description="Measures every checkpoint of a pre-training run (SwAV loss on fixed "
                                          "validation crops, probes, prototype usage, codes, cross-sensor "
                                          "agreement, CKA, effective rank, weight norm), finds sudden drops in "
                                          "its training loss, and writes dynamics.csv, drops.csv and "
                                          "dynamics.png into --out. The run is only read.")
    dyn.add_argument("run", type=Path, help="a pre-training run directory (rice-lab pretrain --out)")
    dyn.add_argument("--out", type=Path, required=True, help="folder for dynamics.csv, drops.csv, dynamics.png (earlier "
                     "ones there are moved to <out>.stale-<UTC time>, never written over)")
    dyn.add_argument("--data", type=Path, default=None,
                     help="the Zindi folder the run was trained on (default: the path in its manifest)")
    dyn.add_argument("--every", type=int, default=1, help="measure every N-th checkpoint (the final always)")
    dyn.add_argument("--max-plants", type=int, default=None,
                     help="probe at most this many labelled plants (a draw stratified by disease)")
    dyn.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    dyn.add_argument("--no-progress", action="store_true", help="no progress bar")
    dyn.set_defaults(func=_cmd_dynamics)

    explain = commands.add_parser(
        "explain", help="explain a fine-tuned classifier and test the explanations: tables, figures, report.html",
        description="Attribution maps of held-out photos, scored for localisation (against the lesion masks, when "
                    "the data has them), faithfulness and robustness beside a random and an edge baseline, with "
                    "the randomisation sanity checks; everything gathered in OUT/report.html, which opens offline.")
    explain.add_argument("run", type=Path, help="a fine-tuning run directory")
    explain.add_argument("data", type=Path, help="Zindi-layout folder (masks/ enables the localisation metrics)")
    explain.add_argument("--out", type=Path, required=True, help="report folder to create; an earlier report there is moved to "
                         "<out>.stale-<UTC time>, never written over (--if-needed reads a current one back)")
    explain.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                         help="attribution methods, by name or comma-separated (default: saliency, integrated "
                              "gradients, Grad-CAM and Guided Grad-CAM)")
    explain.add_argument("--images", type=int, default=None,
                         help="held-out plants explained (default: as many as 2 CPU cores explain in minutes)")
    explain.add_argument("--seed", type=int, default=0, help="which plants, and every method's and metric's noise")
    explain.add_argument("--camera", choices=["both", "rgb", "rgnir"], default="both", help="which photos")
    explain.add_argument("--concepts", action="store_true",
                         help="add TCAV on concepts cut with the material masks, with its controls (minutes)")
    explain.add_argument("--shuffled", type=Path, default=None, metavar="RUN",
                         help="the run's twin fine-tuned with --shuffled-labels: adds data randomisation")
    explain.add_argument("--if-needed", action="store_true",
                         help="keep a report already in --out made with these settings, data and classifiers")
    explain.add_argument("--no-progress", action="store_true", help="no progress bar")
    explain.set_defaults(func=_cmd_explain)
    return parser


def _encoders(pairs: list[str]) -> dict[str, str]:
    """``NAME=RUN`` pairs (RUN: a pre-training run, ``random`` or ``imagenet``) -> {name: run}."""
    encoders = {}
    for pair in pairs:
        name, sep, spec = pair.partition("=")
        if not sep or not name or not spec:
            raise RiceLabError(f"--encoder {pair!r}: give NAME=RUN (RUN: a pre-training run directory, "
                               "'random' or 'imagenet')")
        encoders[name] = spec
    return encoders


@_one_line
def _cmd_experiment(args: argparse.Namespace) -> int:
    from rice_lab.finetune import experiments
    from rice_lab.finetune.config import get_preset

    seeds = range(args.seeds)
    if args.name == "bump":
        from rice_lab.explain import bump

        bump.bump_experiment(args.data, args.out, seeds, tuple(args.arms or bump.ARMS), args.epochs or bump.EPOCHS,
                             args.threads or 1)
        print(f"wrote {args.out / 'bump.csv'}, {args.out / 'bump_summary.csv'} and {args.out / 'bump.png'}")
        return 0
    if args.name == "views":
        from rice_lab.ssl import views_experiment as views

        views.views_experiment(args.data, args.out, tuple(args.arms or views.ARMS), seeds, args.preset,
                               args.epochs, args.threads or 1, tuple(args.fractions or views.FRACTIONS))
        print(f"wrote {args.out / 'views.csv'}, {args.out / 'views_summary.csv'}, "
              f"{args.out / 'views_paired.csv'} and {args.out / 'views.png'}")
        return 0
    preset = get_preset(args.preset, epochs=args.epochs, threads=args.threads)
    encoders = _encoders(args.encoder)
    if not encoders:
        raise RiceLabError(f"{args.name} needs at least one --encoder NAME=RUN")
    if args.name in ("self-distillation", "leakage") and len(encoders) != 1:
        raise RiceLabError(f"{args.name} takes one --encoder NAME=RUN, got {len(encoders)}")
    if args.name == "label-efficiency":
        experiments.label_efficiency(args.data, args.out, encoders, fractions=args.fractions or experiments.FRACTIONS,
                                     seeds=seeds, modes=args.modes, preset=preset, min_steps=args.min_steps)
    elif args.name == "sensors":
        experiments.sensors(args.data, args.out, encoders, seeds=seeds, preset=preset)
    elif args.name == "self-distillation":
        experiments.self_distillation(args.data, args.out, next(iter(encoders.values())), seeds=seeds, preset=preset)
    else:
        experiments.leakage(args.data, args.out, next(iter(encoders.values())), seeds=seeds, preset=preset)
    stem = args.name.replace("-", "_")
    print(f"wrote {args.out / (stem + '.csv')}, {args.out / (stem + '_summary.csv')} and {args.out / (stem + '.png')}")
    return 0


@_one_line
def _cmd_dynamics(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from rice_lab.explain.dynamics import write_dynamics

    found = write_dynamics(args.run, args.out, data=args.data, every=args.every, max_plants=args.max_plants,
                           progress=not args.no_progress)
    files, drops = found["files"], found["drops"]
    if found["set_aside"] is not None:
        print(f"rice-lab: the earlier measures in {args.out} were moved to {found['set_aside']}", file=sys.stderr)
    shown = ", ".join(f"step {d.step:g} (-{d.size:.3f}, {d.sigmas:.0f} x noise)" for d in drops) or "none"
    print(f"wrote {files['table']} ({len(found['table'])} checkpoints), {files['drops']} and {files['figure']}")
    print(f"sudden drops in the training loss: {shown}")
    return 0


@_one_line
def _cmd_explain(args: argparse.Namespace) -> int:
    from rice_lab.explain.report import DEFAULT_IMAGES, DEFAULT_METHODS, explain_run

    methods = [m.strip() for text in args.methods or [] for m in text.split(",") if m.strip()] or DEFAULT_METHODS
    images = DEFAULT_IMAGES if args.images is None else args.images
    report = explain_run(args.run, args.data, args.out, methods=methods, images=images, seed=args.seed,
                         cameras=None if args.camera == "both" else args.camera, concepts=args.concepts,
                         shuffled=args.shuffled, progress=not args.no_progress, if_needed=args.if_needed)
    if report.set_aside is not None:
        print(f"rice-lab: the earlier report in {args.out} was moved to {report.set_aside}", file=sys.stderr)
    if "localisation" in report.skipped:
        print(f"rice-lab: warning: localisation skipped: {report.skipped['localisation']}", file=sys.stderr)
    print(f"wrote {report.html} ({report.seconds['total']:.0f} s; tables table.csv and table.md, figures in "
          f"{report.out / 'figures'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rice-lab`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RiceLabError as err:
        print(f"rice-lab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rice-lab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
