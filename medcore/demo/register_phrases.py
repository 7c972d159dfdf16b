"""Clinical wording of the register notes: vitals, drips, doses, system-by-system facts and PHI-bearing templates.

These are the look-alikes a PHI tagger must leave alone: numbers with units ("HR 80S", "SBP 90-110",
"LASIX 40MG IV X2", "5/5 STRENGTH", "1:1 SITTER", "132/82"), times ("AT 1400"), eponyms and drug names
(Foley, Swan, Coumadin, Levophed, "NEO"), unit names that are not PHI (MICU, CCU, OSH) and ALL-CAPS words.
Templates use `{slot}`: value slots are filled from VALUE_SLOTS here, PHI slots by medcore.demo.registers;
only the PHI slots become gold spans.
ICU pools are written in capitals (the lower-case register lowers them); nursing and physician pools in mixed case.
"""

from __future__ import annotations

import random
from collections.abc import Callable

DRIPS = (("NEO", (".5", "0.8", "1.2", "2", "3"), "MCG/KG/MIN"), ("LEVOPHED", (".04", "0.08", ".1"), "MCG/KG/MIN"),
         ("PROPOFOL", ("10", "20", "30", "40"), "MCG/KG/MIN"), ("HEPARIN", ("600", "900", "1100"), "U/HR"),
         ("INSULIN", ("2", "4", "6"), "U/HR"), ("NTG", (".5", "1", "2"), "MCG/KG/MIN"), ("AMIO", (".5", "1"), "MG/MIN"),
         ("FENTANYL", ("25", "50", "100"), "MCG/HR"), ("DOPAMINE", ("3", "5", "8"), "MCG/KG/MIN"),
         ("MILRINONE", (".25", ".375", ".5"), "MCG/KG/MIN"), ("NIPRIDE", (".5", "1", "2"), "MCG/KG/MIN"),
         ("VERSED", ("1", "2", "4"), "MG/HR"), ("DILTIAZEM", ("5", "10", "15"), "MG/HR"))  # fmt: skip
BOLUSES = ("LASIX 40MG IV X2", "LASIX 20MG IV X1", "KCL 40MEQ PO X1", "KCL 20MEQ IV", "MSO4 2MG IV",
           "ATIVAN 1MG IV", "LOPRESSOR 5MG IV X3", "NS 500CC BOLUS X1", "LR 250CC BOLUS", "MG SULFATE 2GM IV",
           "CA GLUCONATE 1GM IV", "HALDOL 2MG IV", "TYLENOL 650MG PR", "ZOFRAN 4MG IV", "CARDIZEM 10MG IV X2",
           "1 UNIT PRBC", "2 UNITS FFP", "VIT K 10MG SC")  # fmt: skip
RHYTHMS = ("SR", "NSR", "ST", "SB", "AF", "A-PACED", "V-PACED", "SR-ST", "AFIB")
ECTOPY = ("NO VEA", "NO ECTOPY", "OCC PVCS", "RARE PAC'S", "", "", "FREQ PVC'S", "RUNS OF BIGEMINY")
URINE = ("CLEAR YELLOW", "AMBER", "CLOUDY YELLOW", "DARK AMBER", "PINK TINGED")


def draw_hr(rng: random.Random) -> str:
    base = rng.choice((50, 60, 70, 80, 90, 100, 110, 120))
    rate = rng.choice((f"HR {base}S", f"HR {base}'S", f"HR {base}-{base + 10}", f"HR {base + rng.randint(0, 9)}"))
    return " ".join(part for part in (rate, rng.choice(RHYTHMS), rng.choice(ECTOPY)) if part)


def draw_bp(rng: random.Random) -> str:
    low = rng.randint(8, 13) * 10
    dia = rng.randint(40, min(85, low - 25))
    return rng.choice(
        (f"SBP {low}-{low + 20}", f"BP {low + rng.randint(0, 9)}/{dia}", f"MAP >{rng.choice((60, 65, 70))}",
         f"BP {low}-{low + 30}/{dia}-{dia + 10}", f"SBP {low}S", f"B/P {low}/{dia}")
    )  # fmt: skip


def draw_drip(rng: random.Random) -> str:
    name, doses, unit = rng.choice(DRIPS)
    dose = rng.choice(doses)
    return rng.choice(
        (f"{name} @ {dose}{unit}", f"{name} GTT @ {dose} {unit}", f"{name} AT {dose}", f"ON {name} {dose}")
    )


def draw_vent(rng: random.Random) -> str:
    peep, fio2 = rng.choice((5, 8, 10, 12)), rng.choice((40, 50, 60, 100))
    return rng.choice(
        (f"CPAP {peep}/5 {fio2}%", f"AC {rng.choice((450, 500, 600))} X {rng.randint(12, 20)} PEEP {peep} FIO2 {fio2}%",
         f"PSV {rng.choice((10, 12, 15))}/PEEP {peep}", f"{rng.randint(2, 6)}L NC", f"{fio2}% FACE TENT",
         f"IMV {rng.choice((500, 600))}X{rng.randint(8, 14)}")
    )  # fmt: skip


def draw_time(rng: random.Random) -> str:
    hour, minute = rng.randint(0, 23), rng.choice((0, 15, 30, 45))
    return rng.choice(
        (f"{hour:02d}{minute:02d}", f"{hour % 12 + 1}AM", f"{hour % 12 + 1}PM", f"{hour:02d}:{minute:02d}")
    )


def decimal(rng: random.Random, low: float, high: float) -> str:
    return f"{rng.uniform(low, high):.1f}"


VALUE_SLOTS: dict[str, Callable[[random.Random], str]] = {
    "hr": draw_hr,
    "bp": draw_bp,
    "drip": draw_drip,
    "bolus": lambda rng: rng.choice(BOLUSES),
    "vent": draw_vent,
    "time": draw_time,
    "uo": lambda rng: (
        rng.choice(("UO", "U/O", "UOP")) + (lambda low: f" {low}-{low + 20}CC/HR")(rng.randint(2, 8) * 10)
    ),
    "urine": lambda rng: rng.choice(URINE),
    "tmax": lambda rng: decimal(rng, 99.0, 102.9),
    "sat": lambda rng: f"{rng.randint(88, 96)}-{rng.randint(97, 100)}%",
    "rr": lambda rng: f"RR {rng.randint(12, 22)}" + rng.choice(("", f"-{rng.randint(24, 32)}")),
    "k": lambda rng: decimal(rng, 3.0, 3.7),
    "hct": lambda rng: decimal(rng, 22.0, 33.0),
    "inr": lambda rng: decimal(rng, 1.3, 3.4),
    "wbc": lambda rng: decimal(rng, 4.0, 21.0),
    "cr": lambda rng: decimal(rng, 0.7, 3.9),
    "gcs": lambda rng: str(rng.randint(6, 15)),
    "cc": lambda rng: str(rng.choice((10, 20, 30, 45, 60, 80, 250, 500))),
    "abg": lambda rng: f"{decimal(rng, 7.25, 7.48)}/{rng.randint(32, 60)}/{rng.randint(60, 140)}",
    "vitals": lambda rng: (
        f"T {decimal(rng, 97.0, 101.5)} HR {rng.randint(55, 120)} BP {rng.randint(90, 165)}/{rng.randint(45, 95)} "
        f"RR {rng.randint(12, 28)} O2 sat {rng.randint(89, 100)}%"
    ),
}

ICU_HEADERS = ("NPN 7P-7A", "NPN 7A-7P", "NURSING PROGRESS NOTE 0700-1900", "MICU NPN", "CCU NURSING PROGRESS NOTE",
               "CSRU SHIFT SUMMARY 7P-7A", "SICU NURSING NOTE", "MICU/SICU NURSING ADMISSION NOTE", "NSG NOTE 3-11",
               "CCU NURSING TRANSFER NOTE")  # fmt: skip
ICU_SECTIONS: dict[str, tuple[str, ...]] = {
    "NEURO": ("A&OX3, MAE, FOLLOWS COMMANDS.", "ALERT AND ORIENTED X3.", "SEDATED ON PROPOFOL, AROUSABLE TO VOICE.",
              "PERRLA 3MM BRISK.", "MAE, 5/5 STRENGTH UPPER EXT.", "RESTLESS O/N, 1:1 SITTER AT BEDSIDE.",
              "NODS APPROPRIATELY.", "PT. C/O PAIN, MEDICATED W/ MSO4 2MG IV W/ GOOD EFFECT.", "GCS {gcs}.",
              "NO SEIZURE ACTIVITY NOTED.", "CONFUSED AT TIMES, EASILY REORIENTED.", "OFF PROPOFOL SINCE {time}."),
    "CV": ("{hr}.", "{bp}.", "{drip}.", "NEO TITRATED TO KEEP SBP >90.", "NEO WEANED OFF AT {time}.", "PALPABLE PEDAL PULSES.",
           "SWAN IN PLACE, CI 2.4.", "SKIN WARM AND DRY.", "+2 EDEMA BLE.", "A-LINE DAMPENED, FLUSHED.",
           "LEVOPHED @ .08MCG/KG/MIN.", "{bolus} FOR {bp}.", "K {k}, REPLETED."),
    "RESP": ("{vent}.", "SATS {sat}.", "LS COARSE BILAT, DIMINISHED AT BASES.", "SX FOR SM AMT THICK WHITE SPUTUM.",
             "{rr}.", "EXTUBATED WITHOUT DIFFICULTY.", "ABG {abg}.", "CXR DONE.", "NEBS Q4H.", "CPAP 5/5 40%."),
    "GI": ("ABD SOFT, NONTENDER, +BS.", "NPO.", "TF @ {cc}CC/HR, RESIDS MINIMAL.", "NO BM THIS SHIFT.", "OGT TO LWS.",
           "TOL CLEAR LIQUIDS.", "PROTONIX IV."),
    "GU": ("FOLEY DRAINING {urine} URINE.", "{uo}.", "LASIX 40MG IV X2 WITH GOOD RESPONSE.", "CREAT {cr}.",
           "DIURESED WELL TO LASIX.", "FOLEY PATENT."),
    "ID": ("TMAX {tmax}.", "AFEBRILE.", "ON VANCO/ZOSYN.", "WBC {wbc}.", "BLD CX X2 SENT.", "PANCULTURED."),
    "SKIN": ("COCCYX INTACT.", "CHEST INCISION CDI.", "DSG D&I.", "STAGE II DECUB ON SACRUM.", "TURNED Q2H."),
    "HEME": ("HCT {hct}.", "1 UNIT PRBC GIVEN.", "INR {inr}, COUMADIN HELD.", "HEPARIN GTT @ 900U/HR."),
    "SOCIAL": ("FAMILY IN TO VISIT, UPDATED.", "NO CALLS FROM FAMILY OVERNIGHT.", "EMOTIONAL SUPPORT GIVEN.",
               "CODE STATUS: FULL CODE."),
    "PLAN": ("CONT TO MONITOR.", "WEAN NEO AS TOL.", "WEAN TO EXTUBATE.", "DIURESE.", "CONT SUPPORTIVE CARE.",
             "?TRANSFER TO FLOOR IF STABLE.", "FOLLOW LYTES."),
}  # fmt: skip
# ALL-CAPS system names are traps in their own right ("CARDIAC" is not a surname).
SECTION_ALIASES = {"NEURO": ("NEURO", "NEURO", "NEURO"), "CV": ("CV", "CARDIAC", "CVS"), "RESP": ("RESP", "RESP", "PULM"),
                   "GI": ("GI",), "GU": ("GU", "GU", "RENAL"), "ID": ("ID",), "SKIN": ("SKIN", "INTEG"),
                   "HEME": ("HEME",), "SOCIAL": ("SOCIAL",), "PLAN": ("PLAN", "PLAN", "A/P")}  # fmt: skip
ICU_DIAGNOSES = ("CP AND DOE", "SOB", "MI", "UROSEPSIS", "GI BLEED", "CHF EXACERBATION", "ALTERED MS", "PNA",
                 "RESP FAILURE", "DKA")  # fmt: skip

NURSING_HEADERS = ("Resp care note:", "Nursing Progress Note 7a-7p", "NPN 7p-7a", "Resp Care:", "Addendum:",
                   "Nursing note", "CCU progress note")  # fmt: skip
NURSING_FACTS = ("Pt remains on {vent}, sats {sat}.", "Suctioned for mod amt white secretions.",
                 "Lung sounds coarse, improving after MDI.", "Pt cont intub on mech vent as per Carevue.",
                 "BS diminished at bases.", "HR {hr}, {bp}.", "Pt medicated w/ mso4 2mg iv for pain.",
                 "Foley draining {urine} urine.", "Cont PSV wean.", "RSBI 68.", "Tol TF at goal.",
                 "Skin intact.", "Lasix given w/ good response.", "Will cont to monitor.", "Neo off since {time}.",
                 "MDI given as per order.", "Pt resting comfortably.", "Afebrile, Tmax {tmax}.")  # fmt: skip

PHYSICIAN_EXAM = ("Gen: NAD, awake.", "HEENT: PERRL, MMM.", "CV: RRR, no m/r/g.", "Lungs: crackles at bases bilat.",
                  "Abd: soft, NT/ND, +BS.", "Ext: no edema, 2+ DP pulses.", "Neuro: A&Ox3, strength 5/5 throughout.",
                  "Skin: no rash.")  # fmt: skip
PHYSICIAN_COURSE = ("Diuresed with Lasix 40mg IV BID with good response; weight down 3 kg.",
                    "Started on heparin gtt and Coumadin, INR therapeutic at discharge.",
                    "Troponin peaked at {k}; managed medically, cath deferred.",
                    "Treated with vancomycin and zosyn for presumed pneumonia, cultures negative.",
                    "Required Levophed briefly for hypotension, weaned off within 24h.",
                    "Swan placed for tailored therapy, CI 2.1 on milrinone, removed on day 3.",
                    "Foley removed and voiding without difficulty.", "Electrolytes repleted; K {k}, Mg 1.8.",
                    "Seen by PT, ambulating with walker.")  # fmt: skip
PHYSICIAN_PROBLEMS = ("CHF exacerbation", "NSTEMI", "urosepsis", "COPD exacerbation", "upper GI bleed",
                      "community acquired pneumonia", "atrial fibrillation with RVR", "DKA", "acute renal failure")  # fmt: skip
PHYSICIAN_HISTORY = ("CAD", "HTN", "DM2", "CHF (EF 30%)", "COPD", "ESRD on HD", "afib on Coumadin", "CVA", "PVD")

VITALS_ONLY_LINES = ("{hr}.", "{bp}.", "{drip}.", "{bolus}.", "{uo}.", "TMAX {tmax}.", "{vent}, SATS {sat}.", "{rr}.",
                     "K {k} REPLETED.", "HCT {hct}.", "NO CHANGES THIS SHIFT.", "SEE CAREVUE FOR DETAILS.",
                     "FOLEY DRAINING {urine} URINE.", "AFEBRILE.")  # fmt: skip

# Templates that carry PHI slots (filled by medcore.demo.registers, which records every PHI piece as a span).
ICU_PHI_FACTS: dict[str, tuple[str, ...]] = {
    "NEURO": ("DR. {doc} AWARE OF MS CHANGES.", "HEAD CT {date} NEG.", "ORIENTED TO PERSON, STATES IT IS {year}.",
              "SEEN BY NEURO, {dr} TO F/U.", "PER {dr}, HOLD SEDATION IN AM."),
    "CV": ("{dr} AWARE OF {bp}, {bolus} GIVEN.", "HO {doc} PAGED RE {hr}.", "S/P CATH {date}, STENT TO LAD.",
           "LOPRESSOR HELD PER {dr}.", "SPOKE WITH {doc} RE PLAN, NEO TO BE WEANED.", "NP {nurse} MADE AWARE OF PVC'S.",
           "DRS {doc} AND {doc} AT BEDSIDE."),
    "RESP": ("EXTUBATED {date}.", "RT {nurse} AWARE.", "VENT WEANED PER {dr}.", "? PLEURODESIS {fdate}.",
             "REINTUBATED {date} FOR HYPOXIA."),
    "GI": ("LAST BM {date}.", "GI ({dr}) TO SCOPE IN AM.", "NPO SINCE {mdate}."),
    "GU": ("LAST HD {date}.", "RENAL ({dr}) FOLLOWING.", "PAGED {doc} RE UO <30CC/HR."),
    "ID": ("ABX D/C'D ON {fdate}.", "BLD CX FROM {date} NGTD.", "ID CONSULT, {dr} RECS PENDING."),
    "SOCIAL": ("{rel} CALLED, UPDATED BY {dr}.", "PT'S {rel} AT BEDSIDE.", "{rel_contact} IS HCP.",
               "LIVES IN {town} WITH {rel}.", "LIVES ALONE AT {street}, {town}.", "ADMITTED FROM {home}.",
               "RETIRED {job}.", "ONLY ABLE TO REACH {rel_name}, WILL CALL BACK.", "{dr} SPOKE WITH {rel} RE GOALS OF CARE.",
               "{rel} RETURNED HOME TO {town} TODAY.", "PT'S {rel} VISITING FROM {town}.", "{pt}'S {rel} CALLED X2."),
    "PLAN": ("TRANSFER TO {ward} WHEN BED AVAILABLE.", "D/C TO {home} WHEN STABLE.", "F/U W/ {dr} IN AM.",
             "FAMILY MTG {date} W/ {dr}.", "?TRANSFER TO {osh} FOR CATH.", "SENT TO {hosp} FOR EVAL.",
             "CALL {doc} (PAGER {pager}) W/ CHANGES.", "FAMILY MTG ON {mdate} IF NO IMPROVEMENT."),
}  # fmt: skip
ICU_OPENERS = ("{age} {sex} ADMITTED {date} FROM {osh} WITH {dx}.", "{age} {sex} TRANSFERRED FROM OSH S/P MI.",
               "{pt} IS A {age} {sex} ADMITTED {date} FROM {home}.", "PT IS S/P CABG X2 ON {date}, REINTUB FOR HYPOXIA ON {date}.",
               "{age} {sex} W/ PMH CAD S/P CABG '{yy}, ADMITTED {mdate} FROM {osh} W/ {dx}.",
               "{age} {sex} BROUGHT TO {hosp} CATH LAB TODAY FROM OSH.",
               "PT IN USOH UNTIL {date} WHEN PRESENTED TO {osh} WITH {dx}.",
               "{age} {sex} TRANSFERRED FROM {osh} ({town}) FOR CATH.", "{age} {sex} ADMITTED TO MICU W/ {dx}.")  # fmt: skip
NURSING_PHI = ("Dr. {doc} aware.", "MD {doc} in to see pt.", "Per {dr}, 2am lopressor held.", "{rel} at bedside, updated.",
               "pt's {rel} called, questions answered.", "Family meeting {date} w/ {dr}.", "Extubated {date}.",
               "Plan to transfer to {ward} today.", "Pt to be d/c'd to {home}.", "{rel_contact} would like a call w/ any changes.",
               "Paged ho {doc} re low u/o.", "Wound nurse, {nurse_full}, consulted re coccyx.", "NP {nurse} made aware.",
               "Spoke with {doc} re plan.", "Sent to {osh} for cath {mdate}.", "pt states it is {year}, reoriented.",
               "{age} {sex} admitted {date} from {osh}.")  # fmt: skip
THERAPY_NOTE = (
    "{kind}\nO: Please refer to initial evaluation {date} for further information regarding PMH.\n"
    "Pt seen in bed, {vent}, {hr}. Mod assist x2 to sit EOB, tolerated 10 min.\n"
    "A: Decreased activity tolerance.\nP: F/U {date}   Pager #{pager}   Time: {time}\n"
)
SOCIAL_WORK_NOTE = (
    "Social Work: Met with pt's {rel} to offer support. Pt lives in {town} with {rel}, "
    "retired {job}. {rel_contact} is primary contact. Will follow, pager {pager}.\n"
)
DISCHARGE_LINES = ("DISCHARGE SUMMARY\n", "Name: {pt_formal}    Unit No: {mrn}\n",
                   "Admission Date: {fdate}    Discharge Date: {fdate}\n", "Date of Birth: {dob}    Sex: {sx}\n",
                   "Service: {service}\n", "Attending: {dr_full}\n\n", "Chief Complaint: {problem}\n\n",
                   "History of Present Illness: {age} {sex} with PMH {pmh} who presented to {osh} on {date} with "
                   "{problem}. Transferred to {hosp} for further management.\n\n",
                   "Past Medical History: {pmh}; s/p CABG in {year}.\n\n",
                   ("Social History: Lives with {rel} in {town}. Retired {job}. Quit tobacco in {year}.\n\n",
                    "Social History: Lives alone at {street}, {town}; {rel_contact} checks on pt daily.\n\n",
                    "Social History: Resident of {home} since {year}. Former {job}.\n\n"),
                   "Physical Exam: {vitals}\n{exam}\n\n", "Hospital Course: {course} {course}\n\n",
                   ("Discharge Disposition: Extended Care at {home}\n", "Discharge Disposition: Home with services\n",
                    "Discharge Disposition: Transfer to {ward}, {hosp}\n"),
                   ("Followup Instructions: Dr. {doc} ({phone}) in 2 weeks; email {email} with questions.\n",
                    "Followup Instructions: PCP Dr. {doc} in 1-2 weeks, cardiology clinic on {fdate}.\n",
                    "Followup Instructions: Dr. {doc} in 2 weeks. Labs on {mdate}.\n"),
                   "Completed by: {dr_full}, MD on {fdate}\n")  # fmt: skip
PROGRESS_LINES = ("{unit} Attending Note {today}\n", "Pt seen and examined, d/w Dr. {doc} and team.\n",
                  "S: Events overnight: {bolus} for {bp}.\n", "O: {vitals}\n{exam}\n",
                  "Labs: K {k}, Hct {hct}, INR {inr}, WBC {wbc}.\n", "A/P: {age} {sex} with {problem}.\n- {course}\n- {course}\n",
                  ("- Dispo: to {home} when stable; d/w {rel} today, {rel_contact} is HCP.\n",
                   "- Dispo: home when stable, {rel} aware.\n", "- Dispo: full code, remains in unit.\n"),
                  ("{md_sig}, pager {pager}\n", "{md_sig}\n", "{md_sig}\n"))  # fmt: skip
