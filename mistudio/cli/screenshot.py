from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("screenshot", help="save a PNG of every tab and dialog (offscreen)")
    p.add_argument("--out", required=True, help="folder for the PNG files")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=900)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from mistudio.ui.screenshots import take_screenshots

    for path in take_screenshots(Path(args.out), args.data_dir, size=(args.width, args.height)):
        print(path)
    return 0
