"""The ``msda-widgets`` command.

``msda-widgets demo`` trains a detector on the built-in generated data and reports what it found
against the known ground truth. ``msda-widgets detect DATA.csv`` runs the engine on a file and
prints the anomalies (``--out FILE`` writes them as CSV; nothing is written unless asked).
The dashboard (Voila) commands arrive with the dashboard.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .errors import MsdaError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="msda-widgets", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default="deepcnn", help="deepcnn (forecaster) or lstm_ae (autoencoder)")
    common.add_argument("--lookback", type=int, default=10, help="time steps per window")
    common.add_argument("--epochs", type=int, default=30, help="maximum training epochs")
    common.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    common.add_argument("--threshold", default="quantile", help="quantile, ksigma, pot or fixed")
    common.add_argument("--top", type=int, default=10, help="how many anomalies to list")
    sub.add_parser("demo", parents=[common], help="detect anomalies in the built-in generated data")
    d = sub.add_parser("detect", parents=[common], help="detect anomalies in a CSV file")
    d.add_argument("data", help="CSV file with a timestamp column and numeric sensor columns")
    d.add_argument("--missing", type=float, action="append", default=[],
                   help="a sentinel value meaning 'missing' (repeatable), e.g. --missing -200")
    d.add_argument("--out", help="write the anomalies (timestamp, score, top sensor) to this CSV file")
    return p


def _report(det, data, top: int, out=sys.stdout):
    found = det.detect(data)
    flagged = found.scores[found.anomalies].sort_values(ascending=False)
    culprit = found.contributions.loc[flagged.index].idxmax(axis=1)
    h = det.history_
    out.write(f"{det!r}\n")
    out.write(f"trained {len(h.records)} epochs in {h.seconds:.1f} s ({h.stop_reason}); "
              f"final train loss {h.train_loss[-1]:.5f}\n")
    out.write(f"threshold {det.threshold_:.4f}: {len(flagged)} of {int(found.scored.sum())} scored rows flagged\n")
    for ts in flagged.index[:top]:
        out.write(f"  {ts!s:<26} score {flagged[ts]:8.4f}  top sensor {culprit[ts]}\n")
    return found, flagged, culprit


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    from . import Detector, datasets

    settings = dict(model=args.model, lookback=args.lookback, epochs=args.epochs, seed=args.seed,
                    threshold=args.threshold)
    try:
        if args.command == "demo":
            ds = datasets.demo()
            det = Detector(**settings).fit(ds.data)
            found, flagged, _ = _report(det, ds.data, args.top)
            labels = ds.labels.reindex(found.scores.index, fill_value=False)
            hit = sum(bool(labels[(labels.index >= e.start) & (labels.index <= e.end)].index.isin(flagged.index).any())
                      for e in ds.events)
            sys.stdout.write(f"ground truth: {len(ds.events)} injected events; {hit} have at least one flagged "
                             f"timestamp; {int(labels[flagged.index].sum())} of {len(flagged)} flags are inside an event\n")
        else:
            det = Detector(missing_values=args.missing, **settings)
            det.fit(args.data)
            _, flagged, culprit = _report(det, args.data, args.top)
            if args.out:
                flagged.to_frame("score").assign(top_sensor=culprit).to_csv(args.out)
                sys.stdout.write(f"wrote {len(flagged)} anomalies to {args.out}\n")
    except MsdaError as exc:
        sys.stderr.write(f"msda-widgets: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
