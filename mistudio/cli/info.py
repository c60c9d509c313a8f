from __future__ import annotations

from mistudio.cli import open_studio, print_json


def register(sub) -> None:
    p = sub.add_parser("info", help="hardware, versions and the data folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    studio = open_studio(args)
    try:
        info = studio.info(with_torch=True)
    finally:
        studio.close(timeout=1)
    if args.json:
        print_json(info)
        return 0
    hw = info["hardware"]
    print(f"mistudio {info['version']}")
    print(f"data folder : {info['data_dir']}")
    print(f"database    : {info['database']} (schema v{info['schema_version']})")
    print(f"secrets     : {info['secrets_backend']}")
    print(f"machine     : {hw['machine']}, {hw['system']}, {hw['cpu_count']} CPU cores, "
          f"{hw['ram_total_bytes'] / 2**30:.1f} GiB RAM "
          f"({hw['ram_available_bytes'] / 2**30:.1f} GiB available)")
    if hw["jetson"]:
        print(f"jetson      : {hw['jetson_model'] or 'yes'} (unified memory)")
    print(f"torch       : {hw['torch_version']} (CUDA {hw['cuda_version'] or 'none'})")
    if hw["gpus"]:
        for g in hw["gpus"]:
            mem = f"{g['total_bytes'] / 2**30:.1f} GiB" if g["total_bytes"] else "memory n/a"
            print(f"gpu {g['index']}       : {g['name']}, {mem}, compute capability "
                  f"{g['compute_capability']}, bf16 {'yes' if g['bf16'] else 'no'}")
    else:
        print(f"gpu         : none. {hw['fallback_reason']}")
    print(f"device      : {hw['best_device']}")
    return 0
