"""A small deterministic instruction/QA set (question, short note excerpt, answer) for causal-LM fine-tuning.

Answers are clinical facts (a drug, a diagnosis, a score), never PHI, so they survive redaction of the
context; the context itself carries PHI (with gold `phi_spans`) like any excerpt of a real note.

    from medcore.demo.qa import generate_qa
    rows = generate_qa(seed=0, n=300)   # [{qa_id, question, context, answer, specialty, phi_spans}]
"""

from __future__ import annotations

import random

from faker import Faker

from medcore.demo import phi_values as pv
from medcore.demo.clinical import SPECIALTIES, TRAP_SNIPPETS
from medcore.demo.notes import NoteBuilder, clinical_slots, date_slots, draw_cast, patient_slots, staff_slots
from medcore.errors import MedcoreError

# kind -> (question, sentence stating the fact, slot holding the answer)
QUESTIONS: dict[str, tuple[str, str, str]] = {
    "medication": ("What medication was started?", "{Pronoun} was started on {med} for {problem}.", "med"),
    "diagnosis": ("What is the diagnosis?", "The working diagnosis is {problem}.", "problem"),
    "test": ("Which test was ordered?", "A {test} has been requested.", "test"),
    "procedure": (
        "What procedure was performed?",
        "{Pronoun} underwent {procedure} without complication.",
        "procedure",
    ),
    "symptom": ("What symptom did the patient present with?", "{Pronoun} presented with {symptom}.", "symptom"),
    "blood_pressure": ("What was the blood pressure?", "BP {bp}, HR 80, afebrile.", "bp"),
    "pain": ("What pain score was recorded?", "Pain {pain} on arrival.", "pain"),
    "specialty": (
        "Which specialty should follow this patient up?",
        "Examination showed {finding}; {problem} suspected.",
        "specialty",
    ),
}
LEAD_INS = (
    "{pt_ref} was seen on {visit} by Dr. {dr}. ",
    "{pt_full} ({age_phrase} {sex_word}) attended {hospital} on {visit}. ",
    "Clinic letter {visit}, re {pt_formal}, MRN {mrn}. ",
    "Phone review with {pt_first}'s {rel_role} {rel} ({phone}). ",
)
QA_KEYS = ("qa_id", "question", "context", "answer", "specialty", "phi_spans")


def generate_qa(seed: int = 0, n: int = 300) -> list[dict]:
    """`n` question/context/answer rows from `seed`; the same seed gives the same rows."""
    if n < 1:
        raise MedcoreError(f"generate_qa needs n >= 1 rows (got {n}).")
    # A string seed keeps this stream independent of generate_notes(seed) while staying deterministic.
    rng = random.Random(f"medcore-qa:{seed}")
    fake = Faker("en_US")
    fake.seed_instance(seed + 7919)
    hospitals, wards, staff = draw_cast(rng, fake, n * 4)
    kinds, specialties = list(QUESTIONS), list(SPECIALTIES)
    rows = []
    for index in range(n):
        specialty = rng.choice(specialties)
        patient = pv.draw_patient(rng, fake, index, specialty, hospitals, staff)
        slots = {
            **patient_slots(rng, patient),
            **staff_slots(rng, patient, rng.choice(staff), rng.choice(staff), hospitals, wards),
            **date_slots(rng, patient),
            **clinical_slots(rng, specialty),
            "bp": rng.choice(TRAP_SNIPPETS["blood_pressure"]),
            "pain": rng.choice(TRAP_SNIPPETS["pain_score"]),
            "specialty": specialty,
        }
        kind = kinds[index % len(kinds)]  # balanced over question kinds
        question, fact, answer_slot = QUESTIONS[kind]
        distractor = QUESTIONS[rng.choice([k for k in kinds if k not in (kind, "specialty")])][1]
        sentences = [fact, distractor]
        rng.shuffle(sentences)
        builder = NoteBuilder()
        for template in (rng.choice(LEAD_INS), " ".join(sentences)):
            builder.fill(template, slots)
        spans = [{k: s[k] for k in ("start", "end", "type", "subtype")} for s in builder.spans]
        rows.append(
            {
                "qa_id": f"Q{index:05d}",
                "question": question,
                "context": builder.text,
                "answer": slots[answer_slot],
                "specialty": specialty,
                "phi_spans": spans,
            }
        )
    return rows
