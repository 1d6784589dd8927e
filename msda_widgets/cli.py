"""The ``msda-widgets`` command.

  msda-widgets demo   [--port N] [--theme light|dark]          the dashboard on the built-in data
  msda-widgets serve  [DATA.csv] [--port N] [--theme light|dark] the dashboard (Voila) on a file
  msda-widgets demo --classroom [--teacher-code CODE]           the "find the threshold" exercise
  msda-widgets detect [DATA.csv] [--out FILE] ...               the engine in the terminal

``serve`` and ``demo`` start Voila on 127.0.0.1 and print the URL. ``detect`` trains a detector,
prints the anomalies (and, on the built-in data, how they compare with the ground truth);
``--out FILE`` writes them as CSV — nothing is written unless asked.

``--classroom`` (``demo`` and ``serve``) opens the dashboard in classroom mode
(``Dashboard(classroom=True)``: small fast seeded models, the ground truth hidden until the
"show answers" switch). ``--teacher-code CODE`` makes that switch ask for CODE, so students on
the server cannot reveal the answers; the code can also be given in the environment variable
``MSDA_WIDGETS_TEACHER_CODE`` (then it does not show in the process list).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

from .errors import MsdaError

APP_NOTEBOOK = Path(__file__).parent / "app" / "dashboard.ipynb"
DEFAULT_PORT = 8866


def voila_command(data: Optional[str], port: int, theme: str, open_browser: bool = False, *,
                  classroom: bool = False, teacher_code: Optional[str] = None) -> tuple[list[str], dict]:
    """The Voila command line and environment for a public, read-only dashboard.

    * sources stripped (``--strip_sources=True``): visitors see widgets, not code;
    * visitors cannot run code: Voila forwards only comm messages from the browser
      (``execute_request`` is refused), so the app's own widget callbacks are all that runs;
    * tracebacks are not sent to the page;
    * closing the page shuts its kernel down; idle kernels left without a connection (a browser
      that crashed) are culled after 5 minutes;
    * each visitor gets a kernel of their own (Voila's default).

    The app notebook reads the environment set here: ``MSDA_WIDGETS_DATA``, ``MSDA_WIDGETS_THEME``,
    and for ``classroom``, ``MSDA_WIDGETS_CLASSROOM=1`` and ``MSDA_WIDGETS_TEACHER_CODE`` (the
    ``teacher_code`` given here, else one already in the environment).
    """
    cmd = [sys.executable, "-m", "voila", str(APP_NOTEBOOK),
           f"--port={port}", "--Voila.ip=127.0.0.1", f"--theme={theme}",
           "--strip_sources=True", "--show_tracebacks=False",
           "--MappingKernelManager.cull_idle_timeout=300",
           "--MappingKernelManager.cull_interval=60",
           "--MappingKernelManager.cull_connected=False",
           # Voila 0.5 never sets the `_xsrf` cookie that its own page sends when it closes, so
           # the page's "shut my kernel down" request was refused and every closed tab kept its
           # kernel (450-570 MB with torch) until the idle cull. The check is off so that closing a
           # tab frees its kernel at once. The only state-changing requests this server accepts
           # are kernel shutdowns, which need the kernel's random 128-bit id.
           "--Voila.tornado_settings=disable_check_xsrf=True",
           "--VoilaConfiguration.file_allowlist=.*\\.(png|jpg|gif|svg|js|css|woff2?|ttf)"]
    if not open_browser:
        cmd.append("--no-browser")
    env = dict(os.environ, MSDA_WIDGETS_THEME=theme)
    if data:
        env["MSDA_WIDGETS_DATA"] = str(Path(data).resolve())
    else:
        env.pop("MSDA_WIDGETS_DATA", None)
    if classroom:
        env["MSDA_WIDGETS_CLASSROOM"] = "1"
        if teacher_code:
            env["MSDA_WIDGETS_TEACHER_CODE"] = teacher_code
    else:
        env.pop("MSDA_WIDGETS_CLASSROOM", None)
        env.pop("MSDA_WIDGETS_TEACHER_CODE", None)
    return cmd, env


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="msda-widgets", description="Find and understand anomalies in "
                                "multi-sensor time series.")
    sub = p.add_subparsers(dest="command", required=True)
    web = argparse.ArgumentParser(add_help=False)
    web.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    web.add_argument("--theme", choices=("light", "dark"), default="light", help="page theme")
    web.add_argument("--open", action="store_true", help="also open a browser")
    web.add_argument("--classroom", action="store_true",
                     help="classroom mode: small fast models, fixed seed, answers hidden until shown")
    web.add_argument("--teacher-code", metavar="CODE",
                     help="with --classroom: showing the answers asks for CODE (or set "
                          "MSDA_WIDGETS_TEACHER_CODE instead, to keep it out of the process list)")
    sub.add_parser("demo", parents=[web], help="the dashboard on the built-in generated data")
    s = sub.add_parser("serve", parents=[web], help="the dashboard on a CSV file (or the built-in data)")
    s.add_argument("data", nargs="?", help="CSV file with a timestamp column and numeric sensor columns")

    d = sub.add_parser("detect", help="detect anomalies in the terminal")
    d.add_argument("data", nargs="?", help="CSV file (default: the built-in generated data)")
    d.add_argument("--model", default="deepcnn", help="deepcnn (forecaster) or lstm_ae (autoencoder)")
    d.add_argument("--lookback", type=int, default=10, help="time steps per window")
    d.add_argument("--epochs", type=int, default=30, help="maximum training epochs")
    d.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    d.add_argument("--threshold", default="quantile", help="quantile, ksigma, pot or fixed")
    d.add_argument("--missing", type=float, action="append", default=[],
                   help="a sentinel value meaning 'missing' (repeatable), e.g. --missing -200")
    d.add_argument("--top", type=int, default=10, help="how many anomalies to list")
    d.add_argument("--out", help="write the anomalies (timestamp, score, top sensor) to this CSV file")
    return p


def _serve(data: Optional[str], port: int, theme: str, open_browser: bool, classroom: bool = False,
           teacher_code: Optional[str] = None) -> int:
    if data is not None and not Path(data).is_file():
        sys.stderr.write(f"msda-widgets: no such file: {data}\n")
        return 2
    if teacher_code is not None and not classroom:
        sys.stderr.write("msda-widgets: --teacher-code is used only in classroom mode; add --classroom.\n")
        return 2
    if teacher_code is not None and not teacher_code.strip():
        sys.stderr.write("msda-widgets: --teacher-code is empty; give a word students cannot guess.\n")
        return 2
    env_code = os.environ.get("MSDA_WIDGETS_TEACHER_CODE")
    if classroom and teacher_code is None and env_code is not None and not env_code.strip():
        sys.stderr.write("msda-widgets: MSDA_WIDGETS_TEACHER_CODE is set but blank; set it to a word "
                         "students cannot guess, or unset it for a plain switch.\n")
        return 2
    cmd, env = voila_command(data, port, theme, open_browser, classroom=classroom, teacher_code=teacher_code)
    sys.stdout.write(f"msda_widgets dashboard: http://127.0.0.1:{port}/  (Ctrl-C to stop)\n")
    sys.stdout.flush()
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


def _detect(args: argparse.Namespace) -> int:
    from . import Detector, datasets

    det = Detector(model=args.model, lookback=args.lookback, epochs=args.epochs, seed=args.seed,
                   threshold=args.threshold, missing_values=args.missing)
    demo = datasets.demo() if args.data is None else None
    data = demo.data if demo is not None else args.data
    det.fit(data)
    found = det.detect(data)
    flagged = found.scores[found.anomalies].sort_values(ascending=False)
    culprit = found.contributions.loc[flagged.index].idxmax(axis=1)
    h = det.history_
    out = sys.stdout
    out.write(f"{det!r}\ntrained {len(h.records)} epochs in {h.seconds:.1f} s ({h.stop_reason}); "
              f"final train loss {h.train_loss[-1]:.5f}\n")
    out.write(f"threshold {det.threshold_:.4f}: {len(flagged)} of {int(found.scored.sum())} scored rows flagged\n")
    for ts in flagged.index[:args.top]:
        out.write(f"  {ts!s:<26} score {flagged[ts]:8.4f}  top sensor {culprit[ts]}\n")
    if demo is not None:
        labels = demo.labels.reindex(found.scores.index, fill_value=False)
        hit = sum(bool(flagged.index[(flagged.index >= e.start) & (flagged.index <= e.end)].size) for e in demo.events)
        out.write(f"ground truth: {len(demo.events)} injected events; {hit} have at least one flagged timestamp; "
                  f"{int(labels[flagged.index].sum())} of {len(flagged)} flags are inside an event\n")
    if args.out:
        flagged.to_frame("score").assign(top_sensor=culprit).to_csv(args.out)
        out.write(f"wrote {len(flagged)} anomalies to {args.out}\n")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _serve(None, args.port, args.theme, args.open, args.classroom, args.teacher_code)
        if args.command == "serve":
            return _serve(args.data, args.port, args.theme, args.open, args.classroom, args.teacher_code)
        return _detect(args)
    except MsdaError as exc:
        sys.stderr.write(f"msda-widgets: {exc}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
