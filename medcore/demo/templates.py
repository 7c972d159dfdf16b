"""Note templates per style. `{slot}` is filled by medcore.demo.notes; PHI slots become gold spans.

A style is a list of sections; each section lists alternative templates and one is drawn per note.
Administrative lines (IDs, contacts) are inserted at a random position so PHI does not always sit in headers.
"""

from __future__ import annotations

STYLES: dict[str, list[tuple[str, ...]]] = {
    "discharge_summary": [
        (
            "DISCHARGE SUMMARY\n{hospital} - {ward}\nPatient: {pt_formal}    MRN: {mrn}    DOB: {dob}\n"
            "Admitted: {admit}    Discharged: {discharge}\nAttending: Dr. {dr}\n\n",
            "{hospital}\nDischarge summary for {pt_full} (MRN {mrn}), account {account}\n"
            "Date of admission: {admit}. Date of discharge: {discharge}.\n\n",
            "{discharge}\nDISCHARGE SUMMARY - {ward}\n{pt_formal}, DOB {dob}\n\n",
        ),
        (
            "HISTORY OF PRESENT ILLNESS: {pt_ref} is a {age_phrase} {sex_word} with a background of {comorbid} "
            "who presented with {symptom} and {symptom2}. {traps}\n\n",
            "HPI: {age_phrase} {sex_word} admitted via the emergency department on {month_day} with {symptom}. "
            "{Pronoun} reports {symptom2} for {duration}. {traps}\n\n",
        ),
        (
            "HOSPITAL COURSE: Workup showed {finding}. A {test} confirmed {problem}. {Pronoun} underwent {procedure} "
            "on the {ordinal} without complication and was started on {med}. {traps2}\n\n",
            "COURSE: Treated for {problem}. {finding}; {test} arranged. Seen by Dr. {dr2} who recommended "
            "{procedure}. {traps2}\n\n",
        ),
        (
            "SOCIAL HISTORY: Lives at {address} with {possessive} {rel_role} {rel}. Works as a {profession} at "
            "{employer}.\n\n",
            "SOCIAL: {Pronoun} is a retired {profession}, originally from {country}; {possessive} {rel_role}, {rel}, "
            "is the main carer (tel {phone}).\n\n",
        ),
        (
            "DISCHARGE MEDICATIONS: {med}, {med2}.\nFOLLOW-UP: Dr. {dr2} on {followup}; clinic fax {fax}.\n\n"
            "Electronically signed by {dr_full}, MD ({dr_user}) on {discharge}.\n",
            "Discharged home on {med} and {med2}. Review with {dr_full} after {holiday}.\nDictated by Dr. {dr}, "
            "pager {pager}.\n",
        ),
    ],
    "progress_note": [
        (
            "Progress Note - {ward}, {hospital}\nDate: {visit}\nPt: {pt_lower}   MRN {mrn}\n\n",
            "{visit} PROGRESS NOTE\n{pt_full}, {age_phrase} {sex_word}, room {room}\n\n",
            "PROGRESS NOTE ({hospital})\n{pt_formal} | {mrn} | seen {visit}\n\n",
        ),
        (
            "S: {pt_first} reports {symptom}, worse since {holiday}. {traps}\n",
            "S: {Pronoun} describes {symptom} and {symptom2}; no change since the {ordinal}. {traps}\n",
        ),
        (
            "O: {finding}. {traps2}\n",
            "O: Alert. {finding}, {finding2}. {traps2}\n",
        ),
        (
            "A: {problem}; background {comorbid}.\n",
            "A/P: {problem}, aged {age}; {comorbid} stable.\n",
        ),
        (
            "P: Continue {med}, add {med2}. {test} booked for {followup}. Discussed with {possessive} {rel_role} "
            "{rel} by phone ({phone}).\n-- {dr_full} / pager {pager}\n",
            "P: {test} on {followup}; start {med}. Plan agreed with {pt_ref}.\nSeen with Dr. {dr2}. {dr_user}\n",
        ),
    ],
    "radiology_report": [
        (
            "RADIOLOGY REPORT\nExam: {test}    Accession: {idnum}\nPatient: {pt_formal}    DOB: {dob}    MRN: {mrn}\n"
            "Referring: Dr. {dr}    Exam date: {scan_date}\n\n",
            "{hospital} Imaging\n{test} performed {scan_date} for {pt_full} ({mrn}); requested by Dr. {dr}.\n\n",
        ),
        (
            "CLINICAL INDICATION: {age_phrase} {sex_word} with {symptom}, known {problem}. "
            "Comparison: study of {holiday}.\n\n",
            "HISTORY: Aged {age}. {symptom} for {duration}. ?{problem}. Background {comorbid}.\n\n",
        ),
        (
            "FINDINGS: {finding}. {finding2}. {traps}\n\n",
            "FINDINGS: There is {finding}. No other acute abnormality. {traps}\n\n",
        ),
        (
            "IMPRESSION: Appearances in keeping with {problem}. Implanted device {device} noted in situ. {traps2}\n\n",
            "IMPRESSION: Consistent with {problem}; suggest {procedure} discussion at MDT on {followup}. {traps2}\n\n",
        ),
        (
            "Reported by {dr_full} ({dr_user}) on {scan_date}. Images: {url}\n",
            "Verified: Dr. {dr2}, {scan_date}. Workstation {ip}.\n",
        ),
    ],
    "nursing_note": [
        (
            "NURSING NOTE {visit}\n{ward}, bed {room}\n",
            "Nursing shift note - {hospital}, {ward}\nDate {visit}\n",
        ),
        (
            "pt {pt_lower} settled overnight. {symptom} overnight, {med} given as charted. {traps}\n",
            "{pt_ref}, aged {age}, mobilising with assistance. Reports {symptom}. {traps}\n",
        ),
        (
            "Obs: {traps2} {finding}.\n",
            "Observations stable. {traps2}\n",
        ),
        (
            "Family: {rel_role} {rel} visited and can be reached on {phone}. Valuables handed to {rel_first}.\n",
            "Spoke with {rel} ({rel_role}) regarding the {test} planned for {followup}.\n",
        ),
        (
            "Entered by {nurse} RN ({nurse_user}) at the end of shift on {visit}.\n",
            "{nurse}, RN, bleep {pager}\n",
        ),
    ],
    "referral_letter": [
        (
            "{visit}\n\nDear Dr. {dr2},\n\nRe: {pt_full}, DOB {dob}, MRN {mrn}\n{address}\n\n",
            "{hospital}\n{visit}\n\nDear colleague,\n\nRe: {pt_formal} (DOB {dob})\nHealth plan {healthplan}\n\n",
        ),
        (
            "Thank you for seeing this {age_phrase} {profession} who presents with {symptom} and {symptom2} over "
            "{duration}. {traps}\n\n",
            "I would be grateful for your opinion on {pt_ref}, a {age_phrase} {sex_word} with {symptom}. {traps}\n\n",
        ),
        (
            "Examination revealed {finding}. A {test} suggested {problem}, and I wonder about {procedure}. "
            "{traps2}\n\n",
            "{Pronoun} has {comorbid} and now {problem}; {finding}. {traps2}\n\n",
        ),
        (
            "Current medications: {med}, {med2}. {Pronoun} can be contacted on {phone} or {email}.\n\n",
            "Medications: {med}. {possessive_cap} {rel_role} {rel} usually attends appointments.\n\n",
        ),
        (
            "Yours sincerely,\n\n{dr_full}\n{hospital}\nFax {fax}    Pager {pager}\n",
            "Kind regards,\nDr. {dr} (licence {license})\n",
        ),
    ],
}

# Administrative lines, one or two per note at a random position: they carry the rarer PHI subtypes.
ADMIN_LINES: tuple[str, ...] = (
    "SSN {ssn} verified at registration.\n",
    "Insurance: health plan {healthplan}, account {account}.\n",
    "Prescriber licence no. {license}.\n",
    "Patient portal user {username}; last login from {ip}.\n",
    "Records requested via {url} by {rel}.\n",
    "Contact email {email}, phone {phone}.\n",
    "Arrived by car, registration {vehicle}; parking pass issued.\n",
    "Implant card: device serial {device}.\n",
    "Specimen {idnum} sent to the laboratory.\n",
    "Home address: {street}, {city}, {state} {zip}.\n",
    "Transferred from {hospital2} on {transfer_date}.\n",
    "Employer: {employer} ({profession}); fitness-for-work note given.\n",
    "Fax results to {fax} attn Dr. {dr2}.\n",
)
