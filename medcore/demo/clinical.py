"""Clinical vocabulary of the demo notes: what each specialty talks about, and the non-PHI traps.

The specialty label is learnable from this vocabulary (diagnoses, drugs, tests), not from the note style,
which is drawn independently. Traps are text a careless redactor would remove although it is not PHI.
"""

from __future__ import annotations

SPECIALTIES: dict[str, dict[str, tuple[str, ...]]] = {
    "cardiology": {
        "problems": (
            "atrial fibrillation",
            "NSTEMI",
            "congestive heart failure",
            "aortic stenosis",
            "stable angina",
            "hypertrophic cardiomyopathy",
            "CHF exacerbation",
        ),
        "symptoms": ("exertional chest pain", "palpitations", "orthopnoea", "ankle oedema", "presyncope"),
        "findings": (
            "troponin peaked at 0.8 ng/mL",
            "an ejection fraction of 35%",
            "ST depression in V4-V6",
            "a harsh systolic murmur at the right upper sternal border",
            "a BNP of 1450",
        ),
        "tests": (
            "transthoracic echocardiogram",
            "coronary angiography",
            "Holter monitor",
            "exercise stress test",
            "cardiac MRI",
        ),
        "procedures": (
            "percutaneous coronary intervention",
            "DC cardioversion",
            "pacemaker implantation",
            "transcatheter aortic valve replacement",
        ),
        "meds": ("metoprolol", "apixaban", "atorvastatin", "furosemide", "lisinopril", "amiodarone", "clopidogrel"),
    },
    "oncology": {
        "problems": (
            "Hodgkin lymphoma",
            "metastatic breast cancer",
            "non-small cell lung cancer",
            "colorectal adenocarcinoma",
            "multiple myeloma",
            "diffuse large B-cell lymphoma",
        ),
        "symptoms": ("night sweats", "unintentional weight loss", "painless lymphadenopathy", "bone pain", "fatigue"),
        "findings": (
            "a 3.2 cm mass on CT",
            "neutrophils of 0.4 after the last cycle",
            "a rising CEA",
            "FDG-avid nodes in the mediastinum",
            "M-protein of 28 g/L",
        ),
        "tests": ("PET-CT", "bone marrow biopsy", "core needle biopsy", "tumour marker panel", "staging CT"),
        "procedures": ("port insertion", "cycle 3 of chemotherapy", "palliative radiotherapy", "lumpectomy"),
        "meds": (
            "pembrolizumab",
            "carboplatin",
            "tamoxifen",
            "ondansetron",
            "dexamethasone",
            "filgrastim",
            "doxorubicin",
        ),
    },
    "neurology": {
        "problems": (
            "Parkinson disease",
            "focal epilepsy",
            "multiple sclerosis",
            "ischaemic stroke",
            "migraine with aura",
            "Wilson disease",
            "Bell's palsy",
        ),
        "symptoms": (
            "resting tremor",
            "left-sided weakness",
            "word-finding difficulty",
            "recurrent seizures",
            "episodic vertigo",
        ),
        "findings": (
            "a positive Babinski sign on the right",
            "Glasgow Coma Scale of 14",
            "cogwheel rigidity",
            "periventricular white matter lesions",
            "an NIHSS of 6",
        ),
        "tests": ("MRI brain", "EEG", "lumbar puncture", "nerve conduction studies", "CT angiogram"),
        "procedures": ("thrombolysis", "deep brain stimulation programming", "botulinum toxin injection"),
        "meds": ("levodopa", "levetiracetam", "lamotrigine", "sumatriptan", "ocrelizumab", "topiramate"),
    },
    "pulmonology": {
        "problems": (
            "COPD",
            "community-acquired pneumonia",
            "idiopathic pulmonary fibrosis",
            "asthma",
            "obstructive sleep apnoea",
            "pulmonary embolism",
        ),
        "symptoms": ("productive cough", "wheeze", "pleuritic chest pain", "haemoptysis", "breathlessness"),
        "findings": (
            "an FEV1 of 48% predicted",
            "bibasal crackles",
            "SpO2 of 89% on room air",
            "right lower lobe consolidation",
            "an AHI of 34",
        ),
        "tests": ("spirometry", "high-resolution CT", "bronchoscopy", "arterial blood gas", "sleep study"),
        "procedures": ("bronchoscopy with lavage", "thoracentesis", "CPAP titration", "pulmonary rehabilitation"),
        "meds": ("tiotropium", "salbutamol", "prednisolone", "azithromycin", "nintedanib", "fluticasone"),
    },
    "gastroenterology": {
        "problems": (
            "Crohn's disease",
            "ulcerative colitis",
            "Barrett's oesophagus",
            "alcoholic cirrhosis",
            "acute pancreatitis",
            "coeliac disease",
        ),
        "symptoms": ("bloody diarrhoea", "epigastric pain", "dysphagia", "melaena", "abdominal distension"),
        "findings": (
            "a lipase of 1200",
            "faecal calprotectin of 850",
            "ascites on ultrasound",
            "grade 2 oesophageal varices",
            "an ALT of 210",
        ),
        "tests": ("colonoscopy", "upper endoscopy", "MRCP", "liver ultrasound", "capsule endoscopy"),
        "procedures": ("variceal banding", "ERCP", "paracentesis", "polypectomy"),
        "meds": ("infliximab", "mesalamine", "omeprazole", "lactulose", "budesonide", "rifaximin"),
    },
}

# Shared background problems: every specialty sees them, so they carry no label signal.
COMORBIDITIES = (
    "hypertension",
    "type 2 diabetes",
    "hypothyroidism",
    "osteoarthritis",
    "CKD stage 3",
    "Graves disease",
    "Hodgkin lymphoma in remission",
    "Parkinson disease",
    "COPD",
    "hyperlipidaemia",
    "gout",
)

# (kind, text) pairs: placed verbatim, never gold spans. `kind` lets an evaluation count false positives.
TRAP_SNIPPETS: dict[str, tuple[str, ...]] = {
    "eponym": (
        "Parkinson disease",
        "Hodgkin lymphoma",
        "Crohn's disease",
        "Graves disease",
        "Wilson disease",
        "Cushing syndrome",
        "Addison disease",
    ),
    "device": ("Foley catheter", "Swan-Ganz catheter", "Hickman line"),
    "score": ("Apgar", "Glasgow Coma Scale"),
    "pain_score": ("5/10", "7/10", "3/10", "8/10"),
    "ratio": ("3/12", "6/52", "2/7"),
    "blood_pressure": ("132/82", "148/90", "118/76", "160/95"),
    "lab_token": ("B12", "D5W", "T4", "HbA1c", "CD4", "K+"),
    "abbreviation": ("COPD", "CHF", "NSTEMI", "CABG", "DVT", "GERD"),
    "duration": ("a couple of months", "two weeks", "several years", "the past 3 days"),
    "number": ("40 mg", "2 tablets", "1.5 L", "12 mmHg"),
    "year": ("2019", "2012", "2008"),
    "word_name": ("will", "hope", "rose", "bill", "may", "grace", "mark"),
}

# One sentence per trap kind; `{x}` is a value from TRAP_SNIPPETS[kind]. VALUE_SENTENCES override it for
# values that need their own wording (the words that are also names in the name pool, the named scores).
TRAP_SENTENCES: dict[str, str] = {
    "eponym": "Also has a history of {x}.",
    "device": "{x} removed on the ward before discharge.",
    "score": "{x} unremarkable.",
    "pain_score": "Pain {x} at rest, improving with paracetamol.",
    "ratio": "Review in {x} with repeat bloods.",
    "blood_pressure": "BP {x}, HR 78, afebrile.",
    "lab_token": "{x} checked and within range.",
    "abbreviation": "Background of {x}, stable.",
    "duration": "Symptoms for {x} before presentation.",
    "number": "Given {x} as a single dose.",
    "year": "First diagnosed in {x}.",
    "word_name": "{x}",
}
VALUE_SENTENCES: dict[str, str] = {
    "Apgar": "{x} scores were 8 and 9 at birth per the mother.",
    "Glasgow Coma Scale": "{x} 15 on arrival.",
    "will": "Patient {x} return if symptoms worsen.",
    "hope": "We {x} to step down therapy at the next visit.",
    "rose": "Creatinine {x} to 1.8 overnight and then settled.",
    "bill": "The pharmacy will {x} the insurer directly.",
    "may": "Symptoms {x} recur with exertion.",
    "grace": "A period of {x} was agreed on the copayment.",
    "mark": "Skin {x} placed at the site for the procedure.",
}
