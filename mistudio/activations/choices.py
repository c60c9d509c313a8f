"""What a user may ask an extraction for: layer choices ("middle", "2-5", ...) and batch sizes.

Pure functions, shared by the service (checking a request) and the UI (previewing a choice).
"""

from __future__ import annotations

from mistudio.errors import UserError

MAX_BATCH_SIZE = 4096  # sequences per forward pass

DEFAULT_SETTINGS = {"layers": [], "hook_types": ["resid_post"], "max_tokens": 1_000_000,
                    "batch_size": 16, "store_dtype": "float32", "skip_bos": True}

def expand_layers(spec, n_layers: int) -> list[int]:
    """Layer choices: ints, "middle", "all", "last", or "a-b" ranges."""
    out: list[int] = []
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    for item in items:
        if isinstance(item, int) or (isinstance(item, str) and item.strip().lstrip("-").isdigit()):
            i = int(item)
            out.append(i if i >= 0 else n_layers + i)
        elif item == "middle":
            out.append(n_layers // 2)
        elif item == "last":
            out.append(n_layers - 1)
        elif item == "all":
            out.extend(range(n_layers))
        elif isinstance(item, str) and "-" in item:
            a, b = (part.strip() for part in item.split("-", 1))
            if not (a.isdigit() and b.isdigit()):
                raise UserError(f"Cannot read the layer range {item!r}.",
                                hint="Write a range as two layer numbers, like 2-5.")
            if int(a) > int(b):
                raise UserError(f"The layer range {item!r} runs backwards.",
                                hint=f"Write it low to high: {b}-{a}.")
            out.extend(range(int(a), int(b) + 1))
        else:
            raise UserError(f"Cannot read the layer choice {item!r}.",
                            hint="Use numbers, ranges like 2-5, 'middle', 'last' or 'all'.")
    bad = [i for i in out if not 0 <= i < n_layers]
    if bad:
        raise UserError(f"Layer(s) {bad} do not exist: the model has {n_layers} layers "
                        f"(0..{n_layers - 1}).", hint="Pick layers in range.")
    return sorted(set(out))


def whole_number(value, field: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or (isinstance(value, float)
                                                    and value != number):
        raise UserError(f"{field} must be a whole number, not {value!r}.")
    return number


def check_batch_size(value) -> int:
    """The batch size (sequences per forward pass) as an int in 1..MAX_BATCH_SIZE."""
    n = whole_number(value, "batch size")
    if not 1 <= n <= MAX_BATCH_SIZE:
        raise UserError(f"batch size is {n}: it must be between 1 and {MAX_BATCH_SIZE} "
                        "sequences per forward pass.",
                        hint="e.g. --batch-size 16; lower it if the device runs out of "
                        "memory.")
    return n


def check_extraction_settings(settings) -> dict:
    """An extraction template's settings, checked, over the defaults."""
    from mistudio.activations.storage import STORE_DTYPES

    if not isinstance(settings, dict):
        raise UserError("Extraction template settings must be a JSON object.")
    unknown = set(settings) - set(DEFAULT_SETTINGS) - {"hook_points"}
    if unknown:
        raise UserError(f"Unknown template settings: {', '.join(sorted(unknown))}.",
                        hint=f"Known: {', '.join(sorted(DEFAULT_SETTINGS))}, hook_points.")
    if settings.get("store_dtype", "float32") not in STORE_DTYPES:
        raise UserError(f"Setting 'store_dtype': unknown storage dtype "
                        f"{settings['store_dtype']!r}.",
                        hint=f"Use one of {', '.join(STORE_DTYPES)}.")
    if "batch_size" in settings:
        settings = {**settings, "batch_size": check_batch_size(settings["batch_size"])}
    if whole_number(settings.get("max_tokens", 0), "max tokens") < 0:
        raise UserError("Setting 'max_tokens': max tokens must be 0 (all) or a positive "
                        "number of tokens.")
    return {**DEFAULT_SETTINGS, **settings}
