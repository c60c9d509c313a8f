"""Prompts of the explainer and the scorers, after EleutherAI's delphi (``eai-delphi``).

Examples are shown as delphi shows them: the tokens where the feature fires wrapped in
``<<...>>`` (consecutive ones in one pair), and, for the explainer, each highlighted token's
activation normalised to 0-10 by the feature's largest activation. Prompt versions are named;
the name is stored with every explanation and score, so a changed prompt is a new version.

The scorers ask about ONE example per prompt and read the answer from the next-token
probabilities of two single-token answers (``yes``/``no`` words of the version), not from
generated text, so even a 135M model gives a graded answer.
"""

from __future__ import annotations

from dataclasses import dataclass

EXPLAINER_SYSTEM = (
    "You are a meticulous AI researcher conducting an important investigation into patterns "
    "found in language. Your task is to analyze text and provide an explanation that "
    "thoroughly encapsulates possible patterns found in it.\n"
    "Guidelines:\n"
    "You will be given a list of text examples on which special words are selected and "
    "between delimiters like <<this>>. If a sequence of consecutive tokens all are important, "
    "the entire sequence of tokens will be contained between delimiters <<just like this>>. "
    "How important each token is for the behavior is listed after each example in "
    "parentheses, from 0 to 10.\n"
    "- Try to produce a concise final description. Simply describe the text features that "
    "are common in the examples, and what patterns you found.\n"
    "- If the examples are uninformative, you don't need to mention them. Don't focus on "
    "giving examples of important tokens, but try to summarize the patterns found in the "
    "examples.\n"
    "- Do not mention the marker tokens (<< >>) in your explanation.\n"
    "- Do not make lists of possible explanations. Keep your explanations short and concise.\n"
    "- Answer with the explanation only, in one short sentence.")

DETECTION_SYSTEM = (
    "You are an intelligent and meticulous linguistics researcher. You will be given a "
    "certain feature of text, such as \"male pronouns\" or \"text with negative sentiment\". "
    "You will then be given a text example. Your task is to determine whether the example "
    "possesses the feature. Answer Yes or No.")

FUZZ_SYSTEM = (
    "You are an intelligent and meticulous linguistics researcher. You will be given a "
    "certain feature of text, such as \"male pronouns\" or \"text with negative sentiment\". "
    "You will then be given a text example in which some words are marked between "
    "delimiters like <<this>>. Your task is to determine whether the marked words are "
    "correctly marked: whether they are the words that carry the feature. Answer Yes or No.")


@dataclass(frozen=True)
class PromptVersion:
    name: str
    explainer_system: str
    detection_system: str
    fuzz_system: str
    yes: str = "Yes"
    no: str = "No"
    show_activations: bool = True
    n_logit_tokens: int = 10
    # drop the model's special tokens (BOS such as <|im_start|>) from the examples: inside a
    # chat prompt the template reads them as control tokens, which derails small models
    hide_special_tokens: bool = False
    # the start of the assistant's answer, which the model completes; without it small
    # models open with a heading ("The marked words in the output are:") and then a list
    explanation_prefix: str = ""


PROMPT_VERSIONS = {
    # delphi's prompt as it is
    "delphi-v1": PromptVersion("delphi-v1", EXPLAINER_SYSTEM, DETECTION_SYSTEM, FUZZ_SYSTEM),
    # for small local models (measured on SmolLM2-135M, docs/autointerp.md): no special
    # tokens in the examples, no activation lists (shorter prompt, fewer copied tokens), and
    # the answer started for the model
    "delphi-v2": PromptVersion("delphi-v2", EXPLAINER_SYSTEM, DETECTION_SYSTEM, FUZZ_SYSTEM,
                               show_activations=False, hide_special_tokens=True,
                               explanation_prefix="These examples are all about"),
}
DEFAULT_PROMPT = "delphi-v2"


def get_version(name: str) -> PromptVersion:
    from mistudio.errors import UserError

    try:
        return PROMPT_VERSIONS[name or DEFAULT_PROMPT]
    except KeyError:
        raise UserError(f"Unknown prompt version {name!r}.",
                        hint=f"Use one of {', '.join(PROMPT_VERSIONS)}.") from None


def normalised(values, max_act: float) -> list[int]:
    """delphi's 0-10 scale: floor(10 * value / the feature's max), clipped to 0..10."""
    if max_act <= 0:
        return [0 for _ in values]
    return [max(0, min(10, int(10.0 * float(v) / max_act))) for v in values]


def highlighted(tokens: list[str], marked: list[bool]) -> str:
    """The text with runs of marked tokens wrapped in ``<<...>>`` (delphi's format)."""
    out, inside = [], False
    for tok, m in zip(tokens, marked):
        if m and not inside:
            out.append("<<")
            inside = True
        elif not m and inside:
            out.append(">>")
            inside = False
        out.append(tok)
    if inside:
        out.append(">>")
    return "".join(out)


def plain(tokens: list[str]) -> str:
    return "".join(tokens)


def visible(tokens: list[str], values: list, hidden=frozenset()) -> tuple[list[str], list]:
    """``tokens`` and their ``values`` (activations or marks) without the ``hidden`` ones."""
    kept = [(t, v) for t, v in zip(tokens, values) if t not in hidden]
    return [t for t, _ in kept], [v for _, v in kept]


def explainer_user(examples, max_act: float, logit_tokens: list[str],
                   version: PromptVersion, hidden=frozenset()) -> str:
    """The explainer's user message: the examples (marked where the feature is > 0, with the
    0-10 activations of the marked tokens) and the tokens the feature promotes. ``hidden``:
    token strings left out of the text (the model's special tokens, for versions that hide
    them)."""
    hidden = hidden if version.hide_special_tokens else frozenset()
    lines = []
    for i, ex in enumerate(examples, 1):
        tokens, values = visible(ex.tokens, ex.values, hidden)
        marked = [v > 0 for v in values]
        lines.append(f"Example {i}: {highlighted(tokens, marked)}")
        if version.show_activations:
            acts = [(t, a) for t, a, m in zip(tokens, normalised(values, max_act), marked)
                    if m]
            lines.append("Activations: " + ", ".join(f"({t!r}, {a})" for t, a in acts))
    logit_tokens = [t for t in logit_tokens if t not in hidden]
    if logit_tokens and version.n_logit_tokens:
        lines.append("")
        lines.append("Top tokens the feature promotes in the output: "
                     + ", ".join(repr(t) for t in logit_tokens[:version.n_logit_tokens]))
    lines.append("")
    lines.append("What do the marked words have in common? Explanation:")
    return "\n".join(lines)


def detection_user(explanation: str, tokens: list[str]) -> str:
    return (f"Feature explanation: {explanation}\n\nText: {plain(tokens)}\n\n"
            "Does this text contain the feature? Answer Yes or No.")


def fuzz_user(explanation: str, tokens: list[str], marked: list[bool]) -> str:
    return (f"Feature explanation: {explanation}\n\nText: {highlighted(tokens, marked)}\n\n"
            "Are the marked words correctly marked for this feature? Answer Yes or No.")


def clean_explanation(text: str) -> str:
    """The generated explanation's first non-empty line, without delphi's [EXPLANATION]:
    prefix or quotes (small models often add both)."""
    for line in text.strip().splitlines():
        line = line.strip()
        if line:
            for prefix in ("[EXPLANATION]:", "Explanation:", "EXPLANATION:"):
                if line.startswith(prefix):
                    line = line[len(prefix):].strip()
            return line.strip('"').strip()
    return ""
