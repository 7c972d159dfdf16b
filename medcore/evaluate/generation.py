"""Free-text generation (causal LM, QA) scored against the response column, with 95% CIs on every headline figure.

Each row's prompt is built exactly as `medcore train` builds it for a causal LM (medcore.train.data.format_prompt:
the note, if mapped, then the question; BOS first; a prompt too long for max_length - max_new_tokens loses its
start, as in training). The model answers greedily, at most max_new_tokens tokens, stopping at the token training
taught it to stop at (EOS, else [SEP]); prompts of similar length share a batch, left-padded so every answer starts
in the same column. An OpenAI-compatible endpoint answers the same prompts instead (medcore.evaluate.endpoint).

Per row (text_metrics): exact_match, token_f1, rouge_l, and embedding_similarity: the cosine of the mean-pooled
embeddings of output and reference by the packaged MiniLM encoder (all-MiniLM-L6-v2's own pooling, its 256-token
limit). yes_no_accuracy, only where some references are yes, no or maybe: the output's first word against them.
predictions.parquet holds these numbers per row, never text; the outputs go to outputs.parquet only when asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from medcore.data.manifest import ColumnMapping, DatasetManifest
from medcore.errors import MedcoreError
from medcore.evaluate.bootstrap import BootstrapConfig
from medcore.evaluate.endpoint import endpoint_outputs
from medcore.evaluate.row_scores import TaskScores, row_mean, row_report
from medcore.evaluate.sources import ModelSource, build_network
from medcore.evaluate.text_metrics import exact_match, first_word, rouge_l, token_f1, yes_no_reference
from medcore.models import load_tokenizer, minilm_path
from medcore.workspace import Workspace

TASK = "causal-lm"
METRICS = ("exact_match", "token_f1", "rouge_l", "embedding_similarity")
YES_NO = "yes_no_accuracy"
EMBEDDING_MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length: what its sentence embeddings were trained on
Progress = Callable[[int, int], None]


def instruction_prompts(frame: pd.DataFrame, mapping: ColumnMapping) -> list[str]:
    """Each row's prompt text, as medcore.train.data.load_units formats it for training."""
    from medcore.train.data import format_prompt  # medcore.train.data loads torch: only when a model runs

    questions = frame[mapping.prompt].fillna("").astype(str).tolist()
    # The same rule as load_units: the text column is the note excerpt unless it is the prompt or response itself.
    has_context = mapping.text in frame and mapping.text not in (mapping.prompt, mapping.response)
    contexts = frame[mapping.text].fillna("").astype(str).tolist() if has_context else [None] * len(questions)
    return [format_prompt(q, c) for q, c in zip(questions, contexts, strict=True)]


def prompt_ids(tokenizer, prompts: list[str], room: int) -> list[list[int]]:
    """BOS (when the tokenizer has one) and the last `room` tokens of each prompt, as tokenize_instructions does."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return [bos + ids[-room:] for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]


def stop_token(tokenizer) -> int | None:
    """The token training appends to every answer: EOS, else [SEP] (an encoder's tokenizer has no EOS)."""
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id


def generate_outputs(
    net, tokenizer, ids: list[list[int]], max_new_tokens: int, batch_size: int, progress: Progress | None = None
) -> tuple[list[str], np.ndarray]:
    """Greedy answers (text, and their token counts without the stop token) in the order of `ids`."""
    import torch

    stop = stop_token(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop
    order = np.argsort([-len(x) for x in ids], kind="stable")
    outputs, lengths = [""] * len(ids), np.zeros(len(ids), dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = len(ids[rows[0]])
            batch = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros_like(batch)
            for k, row in enumerate(rows):  # left padding: generation continues right after each prompt
                batch[k, width - len(ids[row]) :] = torch.tensor(ids[row])
                mask[k, width - len(ids[row]) :] = 1
            out = net.generate(
                input_ids=batch, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                temperature=None, top_p=None, top_k=None, pad_token_id=pad, eos_token_id=stop,
            )  # fmt: skip
            for k, row in enumerate(rows):
                new = out[k, width:].tolist()
                new = new[: new.index(stop)] if stop in new else new
                outputs[row], lengths[row] = tokenizer.decode(new, skip_special_tokens=True), len(new)
            if progress is not None:
                progress(start + len(rows), len(order))
    return outputs, lengths


def embed_texts(model, tokenizer, texts: list[str], batch_size: int) -> np.ndarray:
    """Mean-pooled last hidden states (padding excluded), float64, in the texts' order."""
    import torch

    out = np.zeros((len(texts), model.config.hidden_size))
    order = np.argsort([-len(t) for t in texts], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            enc = tokenizer([texts[r] for r in rows], padding=True, truncation=True,
                            max_length=EMBEDDING_MAX_TOKENS, return_tensors="pt")  # fmt: skip
            hidden = model(**enc).last_hidden_state.double()
            mask = enc["attention_mask"].unsqueeze(-1).double()
            out[rows] = ((hidden * mask).sum(dim=1) / mask.sum(dim=1)).numpy()
    return out


def embedding_similarity(outputs: list[str], references: list[str], batch_size: int) -> np.ndarray:
    """Cosine similarity of each output's and reference's MiniLM sentence embedding."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(minilm_path()).eval()
    tokenizer = load_tokenizer("minilm")
    a, b = (embed_texts(model, tokenizer, texts, batch_size) for texts in (outputs, references))
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def answer_scores(outputs: list[str], references: list[str]) -> dict[str, np.ndarray]:
    """exact_match, token_f1, rouge_l per row; yes_no_accuracy (NaN where the reference is not yes/no/maybe) when
    any reference is yes, no or maybe."""
    pairs = list(zip(outputs, references, strict=True))
    scores = {
        name: np.array([metric(o, r) for o, r in pairs], dtype=float)
        for name, metric in (("exact_match", exact_match), ("token_f1", token_f1), ("rouge_l", rouge_l))
    }
    gold = [yes_no_reference(r) for r in references]
    if any(g is not None for g in gold):
        scores[YES_NO] = np.array(
            [np.nan if g is None else float(first_word(o) == g) for o, g in zip(outputs, gold, strict=True)]
        )
    return scores


def check_mapping(manifest: DatasetManifest) -> None:
    if not (manifest.mapping.prompt and manifest.mapping.response):
        raise MedcoreError(
            f"Dataset '{manifest.name}' maps no prompt and response columns: generation is scored against the "
            "response. Re-import it with both mapped (--prompt-column, --response-column)."
        )


def model_outputs(
    source: ModelSource, ws: Workspace, prompts: list[str], options: dict[str, Any], progress: Progress | None
) -> tuple[list[str], np.ndarray | None]:
    """The model's greedy answers (and their token counts; None from an endpoint, which counts in its own tokens)."""
    max_new, batch_size = options["max_new_tokens"], options["batch_size"]
    if source.endpoint is not None:
        return endpoint_outputs(source.endpoint, prompts, max_new, batch_size, progress), None
    import torch

    room = source.max_length - 1 - max_new  # 1: BOS
    if room < 1:
        raise MedcoreError(
            f"max_new_tokens {max_new} leaves no room for the prompt in max_length {source.max_length}: ask for "
            f"fewer than {source.max_length - 1} tokens."
        )
    net = build_network(source, TASK, [], ws).to(device="cpu", dtype=torch.float32).eval()
    tokenizer = load_tokenizer(source.base, ws)
    return generate_outputs(net, tokenizer, prompt_ids(tokenizer, prompts, room), max_new, batch_size, progress)


def score_generation_split(
    source: ModelSource,
    ws: Workspace,
    manifest: DatasetManifest,
    frame: pd.DataFrame,
    subgroups: dict[str, np.ndarray],
    options: dict[str, Any],
    progress: Progress | None = None,
) -> TaskScores:
    """Answer every prompt of the split and score the answers; options: batch_size, seed, resamples, max_new_tokens."""
    check_mapping(manifest)
    references = frame[manifest.mapping.response].fillna("").astype(str).tolist()
    outputs, lengths = model_outputs(source, ws, instruction_prompts(frame, manifest.mapping), options, progress)
    scores = answer_scores(outputs, references)
    scores["embedding_similarity"] = embedding_similarity(outputs, references, options["batch_size"])
    scores = {name: scores[name] for name in (*METRICS, YES_NO) if name in scores}
    config = BootstrapConfig(resamples=options["resamples"], seed=options["seed"])
    result = row_report(TASK, {name: row_mean(values) for name, values in scores.items()}, subgroups, config)
    predictions = pd.DataFrame({"row": np.arange(len(outputs), dtype=np.int64), **scores})
    if lengths is not None:
        predictions["output_tokens"] = lengths
    record = {"max_new_tokens": options["max_new_tokens"], "decoding": "greedy", "embedding_model": "minilm"}
    outputs_frame = pd.DataFrame({"row": predictions["row"], "output": outputs})
    return TaskScores(predictions, result, record, outputs_frame)
