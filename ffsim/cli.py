"""The ``ffsim`` command line.

Errors in user input (profiles, arguments, data) are printed as one clear message and exit with status
2; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ffsim.data import DatasetError
from ffsim.profiles import ProfileError, describe_profile, list_profiles, load_profile

__all__ = ["main"]


def _cmd_profiles(args: argparse.Namespace) -> int:
    if args.action == "list":
        found = list_profiles()
        width = max((len(n) for n in found), default=4)
        for name, path in found.items():
            try:
                p = load_profile(path)
                desc = p.meta.description
                status = p.profile_hash[:12]
            except ProfileError as exc:
                desc = f"INVALID: {exc.issues[0]}" if exc.issues else "INVALID"
                status = "-" * 12
            print(f"{name:<{width}}  {status}  {desc}")
        return 0
    if not args.name:
        print("ffsim: error: 'profiles show' needs a profile name or a path to a .toml file", file=sys.stderr)
        return 2
    print(describe_profile(load_profile(args.name)))
    return 0


def _cmd_crossbar_demo(args: argparse.Namespace) -> int:
    from ffsim.experiments.retention import format_retention, run_retention
    from ffsim.io import write_json_atomic

    res = run_retention(args.profile, in_features=args.in_features, out_features=args.out_features,
                        batch=args.batch, seed=args.seed, fab_seed=args.fab_seed)
    print(format_retention(res))
    if args.out:
        out = Path(args.out)
        write_json_atomic(out / "retention.json", res)
        print(f"results: {out / 'retention.json'}")
    return 0


def _parse_set(items: list[str]) -> dict:
    import json

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE (got {item!r})")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    from ffsim.backend import requested_backend, set_default_backend
    from ffsim.ff import FFConfig, TrainingDiverged, train

    # --backend, else $FFSIM_BACKEND (a bad value fails here), else cpu; recorded in results.json
    if args.backend:
        set_default_backend(args.backend)
    requested_backend()

    mode = args.mode or ("ideal" if args.profile == "ideal" else "insitu")
    fields = {"model": args.model, "profile": args.profile, "mode": mode, "seed": args.seed,
              "fab_seed": args.fab_seed, "validation": args.validation}
    if args.layers:
        try:
            fields["layers"] = tuple(int(v) for v in args.layers.split(","))
        except ValueError:
            raise ValueError(f"--layers must be comma-separated widths, e.g. 2000,2000 (got {args.layers!r})") from None
    for name in ("epochs", "batch_size", "lr", "lr_head", "eval_train_cases", "eval_every", "negatives", "goodness",
                 "threshold", "temperature", "norm", "peer_norm", "pulse_mode"):
        v = getattr(args, name)
        if v is not None:
            fields[name] = v
    fields.update(_parse_set(args.set))
    load_profile(args.profile)  # a bad profile fails here, before any data is loaded
    cfg = FFConfig(**fields)
    try:
        res = train(cfg, args.out, dataset=args.dataset, resume=args.resume, progress=not args.no_progress,
                    train_cases=args.train_cases, test_cases=args.test_cases)
    except TrainingDiverged as exc:
        print(f"ffsim: training diverged: {exc}", file=sys.stderr)
        return 3
    f = res["final"]
    if f.get("test_error_softmax") is not None:
        pairs = (("test_error_goodness", "goodness"), ("test_error_softmax", "softmax"))
        errs = [f"{100 * f[k]:.2f}% ({name})" for k, name in pairs if f.get(k) is not None]
        print(f"test error: {', '.join(errs)}; energy {f['train_energy_J_per_sample'] * 1e6:.3f} uJ per training "
              f"sample, {f['inference_energy_J_per_image_softmax'] * 1e6:.3f} uJ per inference (softmax, one pass)")
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from ffsim.ff import FFConfig
    from ffsim.mortal import run_mortal

    mode = args.mode or ("ideal" if args.profile == "ideal" else "hybrid")
    fields = {"profile": args.profile, "mode": mode, "seed": args.seed, "fab_seed": args.teacher_fab_seed}
    if args.layers:
        try:
            fields["layers"] = tuple(int(v) for v in args.layers.split(","))
        except ValueError:
            raise ValueError(f"--layers must be comma-separated widths (got {args.layers!r})") from None
    if args.epochs is not None:
        fields["epochs"] = args.epochs
    fields.update(_parse_set(args.set))
    load_profile(args.profile)
    try:
        seeds = [int(v) for v in args.student_fab_seeds.split(",")]
    except ValueError:
        raise ValueError(f"--student-fab-seeds must be comma-separated integers (got {args.student_fab_seeds!r})") \
            from None
    if args.teacher_fab_seed in seeds:
        raise ValueError("--student-fab-seeds must differ from --teacher-fab-seed (a student is another chip)")
    cfg = FFConfig(**fields)
    res = run_mortal(cfg, args.out, student_fab_seeds=seeds, teacher_run=args.teacher_run, transfer=args.transfer,
                     transfer_size=args.transfer_size, distill_epochs=args.distill_epochs, aging=args.aging,
                     teacher_reads=args.teacher_reads, temperature=args.distill_temperature,
                     train_cases=args.train_cases, test_cases=args.test_cases, progress=not args.no_progress,
                     log=lambda m: print(m, file=sys.stderr))
    print(f"results: {Path(args.out) / 'results.json'} ({len(res['rows']) - 1} students)")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ffsim.experiments.sweep import load_study, report, run_sweep

    study = load_study(args.study)
    out = Path(args.out or Path("sweeps") / study["study"]["name"])
    if not args.report:
        run_sweep(args.study, out, scheduler=args.scheduler, n_workers=args.workers, progress=not args.no_progress,
                  log=lambda m: print(m, file=sys.stderr))
    rep = report(out, metric=args.metric)
    print(rep["markdown"])
    print(f"report: {out / 'report.md'}, {out / 'report.csv'}, {out / 'report.png'}")
    return 0


def _cmd_drift(args: argparse.Namespace) -> int:
    from ffsim.experiments.drift import drift_run

    try:
        times = [float(v) for v in args.times.split(",")]
    except ValueError:
        raise ValueError(f"--times must be comma-separated seconds (got {args.times!r})") from None
    which = tuple(w for w in args.which.split(",") if w)
    bad = [w for w in which if w not in ("softmax", "goodness")]
    if bad or not which:
        raise ValueError(f"--which must name softmax and/or goodness (got {args.which!r})")
    res = drift_run(args.run, times, compensate=not args.no_compensation, which=which, test_cases=args.test_cases)
    head = " | ".join(f"{w}: no compensation" + ("" if args.no_compensation else f" | {w}: compensated")
                      for w in which)
    print(f"| time after training (s) | {head} |")
    print("|---:|" + "---:|" * (len(which) * (1 if args.no_compensation else 2)))
    for r in res["rows"]:
        cells = []
        for w in which:
            cells.append(f"{100 * r[f'error_{w}']:.2f} %")
            if not args.no_compensation:
                c = r.get(f"error_{w}_compensated")
                cells.append("—" if c is None else f"{100 * c:.2f} %")
        print(f"| {r['time_s']:g} | " + " | ".join(cells) + " |")
    print(f"results: {Path(args.run) / 'drift.json'}, {Path(args.run) / 'drift.csv'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ffsim", description="Forward-Forward on simulated analog chips.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("profiles", help="list or show hardware profiles")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("name", nargs="?", help="profile name or path to a .toml file (for 'show')")
    p.set_defaults(func=_cmd_profiles)

    p = sub.add_parser("crossbar-demo", help="program a matrix on a chip and read it back as time passes")
    p.add_argument("--profile", default="pcm")
    p.add_argument("--in-features", type=int, default=784)
    p.add_argument("--out-features", type=int, default=256)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="run seed (weights, inputs, run-time noise)")
    p.add_argument("--fab-seed", type=int, default=1, help="fabrication seed of the chip")
    p.add_argument("--out", help="folder for retention.json")
    p.set_defaults(func=_cmd_crossbar_demo)

    p = sub.add_parser("train", help="train a Forward-Forward network on a simulated chip")
    p.add_argument("--profile", default="ideal", help="hardware profile name or path (default: ideal)")
    p.add_argument("--model", default="ff", choices=["ff", "ff-unsupervised", "ff-recurrent", "bp"])
    p.add_argument("--mode", choices=["ideal", "insitu", "hybrid", "model"],
                   help="where the weights live (default: ideal for the ideal profile, else insitu); "
                   "'model' is backprop through a software model of the chip (--model bp)")
    p.add_argument("--layers", help="hidden widths, e.g. 2000,2000,2000,2000 (default 1000,1000,1000)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-head", type=float)
    p.add_argument("--negatives", choices=["hard", "uniform"])
    p.add_argument("--goodness", choices=["sumsq", "meansq", "neg_sumsq"])
    p.add_argument("--threshold", type=float)
    p.add_argument("--temperature", type=float)
    p.add_argument("--norm", choices=["rms", "l2"])
    p.add_argument("--peer-norm", type=float)
    p.add_argument("--pulse-mode", choices=["aggregate", "exact"])
    p.add_argument("--backend", choices=["cpu", "gpu"],
                   help="where the chips are simulated (default: $FFSIM_BACKEND, else cpu); gpu needs CuPy and "
                   "numba.cuda with a CUDA device, and falls back to the CPU with a one-line notice without one")
    p.add_argument("--seed", type=int, default=0, help="run seed (initialization, data order, noise)")
    p.add_argument("--fab-seed", type=int, default=1, help="fabrication seed of the chip")
    p.add_argument("--validation", type=int, default=0, help="hold out this many training cases for validation")
    p.add_argument("--train-cases", type=int, help="use only the first N training cases")
    p.add_argument("--test-cases", type=int, help="evaluate on the first N test cases only")
    p.add_argument("--eval-train-cases", type=int, help="training cases used to measure training error")
    p.add_argument("--eval-every", type=int, help="evaluate every N epochs (and after the last)")
    p.add_argument("--dataset", default="mnist", help="dataset name or path (.npz or a folder of IDX files)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other FFConfig field (JSON value)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, results.json, learning_curves.png)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("distill", help="mortal computation: copy a teacher chip's weights vs. distill it into "
                       "other chips")
    p.add_argument("--profile", default="high-variability")
    p.add_argument("--mode", choices=["ideal", "insitu", "hybrid"], help="training mode of teacher and students "
                   "(default: hybrid, or ideal for the ideal profile)")
    p.add_argument("--layers", help="hidden widths of teacher and students (default 1000,1000,1000)")
    p.add_argument("--epochs", type=int, help="teacher training epochs")
    p.add_argument("--teacher-run", help="a finished 'ffsim train' folder to use as the teacher (skips training)")
    p.add_argument("--teacher-fab-seed", type=int, default=1)
    p.add_argument("--student-fab-seeds", default="2,3,4", help="comma-separated fabrication seeds of the students")
    p.add_argument("--transfer", default="train", choices=["train", "subset", "noisy", "shifted", "augmented"],
                   help="label-free transfer set: the training images, a random subset (--transfer-size), noisy or "
                   "shifted versions, or 'augmented': the images plus a shifted copy of each (twice as many)")
    p.add_argument("--transfer-size", type=int, help="number of transfer images (default: all training images)")
    p.add_argument("--distill-epochs", type=int, default=10)
    p.add_argument("--teacher-reads", type=int, default=1, help="teacher inferences averaged per transfer image "
                   "(each with its own read noise; default 1)")
    p.add_argument("--distill-temperature", type=float, default=1.0, help="temperature of the teacher's soft "
                   "targets and of the student's head while it learns them (default 1)")
    p.add_argument("--aging", action="store_true", help="also age the teacher a year and transfer again")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-cases", type=int)
    p.add_argument("--test-cases", type=int)
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--out", required=True)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser("drift", help="test error of a trained run as its chips drift after training")
    p.add_argument("run", help="a finished 'ffsim train' folder (results.json and checkpoint)")
    p.add_argument("--times", default="1,60,3600,86400,2592000,31536000",
                   help="seconds after training, comma-separated (default: 1 s, 1 min, 1 h, 1 d, 30 d, 1 y)")
    p.add_argument("--which", default="softmax", help="evaluations: softmax, goodness or softmax,goodness")
    p.add_argument("--no-compensation", action="store_true", help="skip the global drift compensation column")
    p.add_argument("--test-cases", type=int, help="evaluate on the first N test images (default: all)")
    p.set_defaults(func=_cmd_drift)

    p = sub.add_parser("sweep", help="run a study (a grid of FF/BP runs) on dask.distributed; resumable")
    p.add_argument("study", help="study file (TOML), e.g. experiments/studies/pcm-read-noise.toml")
    p.add_argument("--out", help="results folder (default: sweeps/NAME)")
    p.add_argument("--scheduler", help="address of an existing dask scheduler, e.g. tcp://HOST:8786 "
                   "(default: a local cluster, one worker per core)")
    p.add_argument("--workers", type=int, help="workers of the local cluster (default: number of cores)")
    p.add_argument("--report", action="store_true", help="only rebuild tables and plots from stored runs")
    p.add_argument("--metric", default="test_error_softmax")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ProfileError as exc:
        print(f"ffsim: {exc}", file=sys.stderr)
        return 2
    except DatasetError as exc:
        print(f"ffsim: dataset error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as exc:
        print(f"ffsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ffsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
