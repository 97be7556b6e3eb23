"""Synthetic but realistic work emails for Smart Compose (chapter 04).

    from genai_helpers.data.emails import email_splits, completion_pairs

    train, val, test = email_splits(4000, 400, 400, seed=0)   # lists of distinct email strings
    pairs = completion_pairs(test, seed=0)                    # (prefix typed so far, what came next)

Real email corpora are private (that is the point of email), so the book generates its own. Each
email has a short header (``From:``, ``To:``, ``Subject:``), a greeting, an optional opener, one or two *intents* (schedule a meeting, ask for a
document, follow up, say thanks, move a meeting, give a status update, introduce a colleague,
invite, remind, apologise for a delay), an optional closing line and a sign-off with the sender's
name. Every intent has several phrasings, and slots (names, days, times, dates, places, topics,
documents, projects) are filled at random, so the space holds far more distinct emails than any
split uses. Some facts recur later in the same email (the recipient's name in the header
and the greeting, the sender's in the header and the sign-off, the subject's topic in the body,
"...on Thursday" ... "See you on Thursday!"), the kind of long-range dependency an n-gram model cannot use and a transformer can.

The generator is a stand-in: real mail is messier, more personal and far more varied. Splits are
fixed by ``seed`` (Python's ``random.Random``, identical on every platform) and disjoint: no email
text appears in two splits.
"""
from __future__ import annotations

import random
from typing import Sequence

__all__ = ["FIRST_NAMES", "LAST_NAMES", "DAYS", "RELATIVE_DAYS", "PAST_DAYS", "TIMES", "MONTHS", "PLACES", "TOPICS",
           "DOCUMENTS", "MEETINGS", "PROJECTS", "TASKS", "EVENTS", "TEAMS", "COMPANIES", "GREETINGS", "OPENERS",
           "CLOSERS", "SIGN_OFFS", "SUBJECTS", "INTENTS", "make_email", "make_emails", "email_splits",
           "completion_pairs"]

FIRST_NAMES = (
    "Anna", "Ben", "Carlos", "Diana", "Elena", "Farid", "Grace", "Hiro", "Ines", "James", "Kavya", "Liam",
    "Maria", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tomas", "Uma", "Victor", "Wei", "Yara",
    "Zoe", "Aisha", "Bruno", "Chloe", "David", "Emma", "Felix", "Hannah", "Ivan", "Julia", "Kenji", "Laura",
    "Marco", "Nina", "Oscar", "Paula", "Rahul", "Sofia", "Theo", "Lucia", "Mei", "Noah", "Olivia", "Pedro",
    "Sara", "Daniel", "Amara", "Jonas", "Leila", "Mateo", "Ingrid", "Kofi", "Alex", "Chris", "Jordan", "Robin")
LAST_NAMES = ("Garcia", "Chen", "Okafor", "Novak", "Schmidt", "Tanaka", "Rossi", "Dubois", "Kowalski", "Silva",
              "Patel", "Johansson", "Murphy", "Haddad", "Nguyen", "Fischer", "Costa", "Lindqvist", "Mensah", "Ortiz")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
RELATIVE_DAYS = ("tomorrow", "next Monday", "next Tuesday", "next week", "later this week", "early next week")
PAST_DAYS = ("last week", "Monday", "Tuesday", "yesterday", "last Thursday", "Friday")
TIMES = ("9:00 am", "9:30 am", "10:00 am", "10:30 am", "11:00 am", "noon", "1:00 pm", "1:30 pm", "2:00 pm",
         "2:30 pm", "3:00 pm", "3:30 pm", "4:00 pm", "4:30 pm")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
PLACES = ("the small meeting room", "conference room B", "the third floor kitchen", "my office", "the cafe downstairs",
          "the usual video link", "the main boardroom", "room 204", "the project room", "the library")
TOPICS = ("the budget review", "the quarterly report", "the hiring plan", "the new website", "the product launch",
          "the customer survey", "the onboarding process", "the marketing campaign", "the sales forecast",
          "the team offsite", "the contract renewal", "the design mockups", "the training schedule",
          "the vendor proposal", "the release notes", "the office move", "the research results",
          "the annual conference", "the support backlog", "the pricing changes", "the data migration",
          "the security audit", "the holiday schedule", "the partnership agreement")
DOCUMENTS = ("the slides", "the latest draft", "the signed contract", "the meeting notes", "the updated spreadsheet",
             "the final report", "your comments", "the invoice", "the project timeline", "the test results",
             "the budget numbers", "the presentation", "the summary", "the revised proposal", "the agenda")
MEETINGS = ("meeting", "call", "catch-up", "review", "one-on-one", "planning session", "check-in")
PROJECTS = ("the Atlas project", "the mobile app", "the billing system", "the new dashboard", "the search upgrade",
            "the warehouse rollout", "the API redesign", "the data platform", "the customer portal", "Project Orion")
TASKS = ("the first round of testing", "the user interviews", "the database migration", "the design review",
         "the security checks", "the beta release", "the documentation", "the performance tuning",
         "the vendor selection", "the pilot with two customers")
EVENTS = ("team lunch", "farewell party", "product demo", "workshop", "welcome breakfast", "book club",
          "quarterly town hall", "holiday dinner")
TEAMS = ("the data team", "the design team", "marketing", "finance", "customer success", "the platform team",
         "legal", "operations", "research", "sales")
COMPANIES = ("Northwind", "Bluebird Labs", "Acme Corp", "Greenfield", "Harbor Analytics", "Lumen Health",
             "Redwood Partners", "Silverline")

GREETINGS = ("Hi {to},", "Hello {to},", "Dear {to},", "Hey {to},", "Good morning {to},", "Hi {to}!",
             "Good afternoon {to},")
OPENERS = ("I hope you're doing well.", "I hope you had a great weekend.", "Hope your week is going well.",
           "Thanks for your email.", "I hope this email finds you well.", "Thanks for getting back to me.",
           "I hope all is well.")
CLOSERS = ("Let me know if you have any questions.", "Looking forward to hearing from you.", "Thanks in advance.",
           "Please let me know if anything is unclear.", "Let me know what you think.",
           "Feel free to reach out if you need anything.", "Thanks again for your help.",
           "Have a great weekend.", "Talk soon.")
SIGN_OFFS = ("Best regards,", "Best,", "Thanks,", "Kind regards,", "Cheers,", "Many thanks,", "Warm regards,",
             "Thank you,", "All the best,")


def _schedule(r: random.Random, c: dict) -> list[str]:
    ask = r.choice((
        "Would you be available for a quick {meeting} on {day} at {time} to discuss {topic}?",
        "Are you free on {day} at {time}? I'd like to go over {topic} with you.",
        "Could we find thirty minutes on {day} to talk about {topic}?",
        "I'd like to set up a {meeting} to review {topic}. Does {day} at {time} work for you?",
        "Do you have time for a {meeting} about {topic} this week? {Day} at {time} would be ideal for me.",
    ))
    more = r.choice((
        "We can meet in {place}.", "I'll send a calendar invite for {place}.",
        "If {day} doesn't work, {day2} at {time2} is also fine for me.",
        "It shouldn't take more than half an hour.", "I'll bring {doc} so we can go through it together.",
    ))
    out = [ask, more]
    if r.random() < 0.5:
        c["late"] = r.choice(("See you on {day}!", "Looking forward to our {meeting} on {day}.",
                              "Talk to you on {day}."))
    return out


def _request(r, c):
    ask = r.choice((
        "Could you please send me {doc} by {day}?",
        "When you get a chance, could you share {doc} for {topic}?",
        "I'm putting together {topic} and would need {doc} from you.",
        "Would you mind sending over {doc} before the {meeting} on {day}?",
        "Can you send me {doc} when you have a moment?",
    ))
    more = r.choice((
        "I need it for the {meeting} on {day}.", "A rough version is fine for now.",
        "It would help me finish my part of {topic}.", "No rush if you're busy this week.",
        "{Colleague} also asked for a copy.",
    ))
    if r.random() < 0.4:
        c["late"] = "Thanks again for your help with {topic}."
    return [ask, more]


def _follow_up(r, c):
    ask = r.choice((
        "I wanted to follow up on my email from {past} about {topic}.",
        "Just following up on {topic}.",
        "Did you have a chance to look at {doc}?",
        "I'm checking in to see if there is any news on {topic}.",
        "Circling back on {topic} from our {meeting} {past}.",
    ))
    more = r.choice((
        "We'd like to make a decision by {day}.", "Let me know if you need anything else from me.",
        "I know things are busy, so no worries if you haven't had time yet.",
        "{Colleague} is waiting on it before moving forward.", "Happy to jump on a call if that's easier.",
    ))
    return [ask, more]


def _thanks(r, c):
    ask = r.choice((
        "Thank you so much for your help with {topic}.",
        "Thanks for taking the time to meet with me {past}.",
        "I really appreciate you sending {doc} so quickly.",
        "Thanks for the great presentation on {topic}.",
    ))
    more = r.choice((
        "It was really helpful to hear your thoughts on {topic}.", "The whole team found it very useful.",
        "I've shared it with {colleague} as well.", "I'll keep you posted on how it goes.",
    ))
    return [ask, more]


def _reschedule(r, c):
    ask = r.choice((
        "Unfortunately, I won't be able to make our {meeting} on {day} at {time}.",
        "Something came up and I need to move our {meeting} on {day}.",
        "Would it be possible to reschedule our {meeting} about {topic}?",
        "I'm afraid I have a conflict on {day} at {time}.",
    ))
    more = r.choice((
        "Would {day2} at {time2} work instead?", "Could we do {day2} at {time2} instead?",
        "Sorry for the short notice.", "I'm free any time on {day2} if that suits you.",
    ))
    return [ask, more]


def _update(r, c):
    ask = r.choice((
        "Quick update on {project}: we finished {task} and are on track for {date}.",
        "The team has completed {task} for {project}.",
        "I wanted to give you a short update on {project}.",
        "Good news: {task} for {project} is done.",
    ))
    more = r.choice((
        "The next step is {task2}, which should be done by {day}.", "We're still waiting on {doc} from {team}.",
        "There are a few open questions that I'd like to discuss on {day}.",
        "Overall we're in good shape for the launch on {date}.",
    ))
    return [ask, more]


def _introduce(r, c):
    ask = r.choice((
        "I'd like to introduce you to {colleague}, who leads {team} at {company}.",
        "I wanted to connect you with {colleague} from {company}.",
        "Let me introduce {colleague}, who has been working on {topic} with us.",
    ))
    more = r.choice((
        "I think you two would have a lot to talk about.", "{Colleague_first} has a lot of experience with {topic}.",
        "I'll let you take it from here.", "{Colleague_first} can tell you more about {project}.",
    ))
    return [ask, more]


def _invite(r, c):
    ask = r.choice((
        "We're having a {event} on {date} at {time} in {place}, and I'd love for you to join.",
        "You're invited to our {event} on {date}.",
        "Would you like to join us for the {event} on {day}?",
    ))
    more = r.choice((
        "Please let me know by {day2} if you can make it.", "Feel free to bring a friend.",
        "Food and drinks will be provided.", "It starts at {time} in {place}.",
    ))
    return [ask, more]


def _remind(r, c):
    ask = r.choice((
        "Just a friendly reminder that {doc} is due on {day}.",
        "This is a reminder about our {meeting} {rel} at {time}.",
        "A quick reminder to send {doc} before the {meeting} on {day}.",
        "Don't forget that {topic} is on the agenda for {day}.",
    ))
    more = r.choice((
        "Let me know if you need more time.", "The {meeting} will be in {place}.",
        "Please reply to this email once it's done.", "{Colleague} will join us as well.",
    ))
    return [ask, more]


def _delay(r, c):
    ask = r.choice((
        "Sorry for the late reply, it has been a busy week.",
        "Apologies for the delay in getting back to you.",
        "Sorry I missed your call {past}.",
    ))
    more = r.choice((
        "I'm still working on {doc} and will send it to you by {day}.",
        "I've read your notes on {topic} and agree with most of them.",
        "I can give you an answer on {topic} by {day}.",
        "I'll have {doc} ready before our {meeting} on {day}.",
    ))
    return [ask, more]


SUBJECTS = {
    "schedule": ("Meeting about {topic}", "Quick {meeting} on {day}?", "{topic}", "Time to talk about {topic}?"),
    "request": ("Request: {doc}", "{doc} for {topic}", "Could you send {doc}?", "{topic}"),
    "follow_up": ("Following up: {topic}", "Re: {topic}", "Any news on {topic}?", "Checking in"),
    "thanks": ("Thank you!", "Thanks for your help with {topic}", "Re: {topic}", "Thanks"),
    "reschedule": ("Moving our {meeting} on {day}", "Reschedule: {topic}", "Change of plans for {day}",
                   "Can we move our {meeting}?"),
    "update": ("Update on {project}", "{project}: status update", "Progress on {project}", "Weekly update"),
    "introduce": ("Introduction: {colleague}", "Meet {colleague_first}", "Connecting you with {colleague_first}"),
    "invite": ("Invitation: {event} on {date}", "Join us for the {event}", "{event} on {day}"),
    "remind": ("Reminder: {doc}", "Reminder about {day}", "Don't forget: {topic}", "Friendly reminder"),
    "delay": ("Sorry for the delay", "Re: {topic}", "Catching up on {topic}", "Apologies"),
}

INTENTS = {"schedule": _schedule, "request": _request, "follow_up": _follow_up, "thanks": _thanks,
           "reschedule": _reschedule, "update": _update, "introduce": _introduce, "invite": _invite,
           "remind": _remind, "delay": _delay}


def make_email(rng: random.Random) -> str:
    """One email drawn with ``rng``. Lines are separated by ``\\n``; a blank line after the greeting."""
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
    r = rng
    to, sender = r.sample(FIRST_NAMES, 2)
    colleague_first = r.choice([n for n in FIRST_NAMES if n not in (to, sender)])
    day, day2 = r.sample(DAYS, 2)
    time, time2 = r.sample(TIMES, 2)
    task, task2 = r.sample(TASKS, 2)
    c = dict(to=to, day=day, day2=day2, time=time, time2=time2, place=r.choice(PLACES), topic=r.choice(TOPICS),
             doc=r.choice(DOCUMENTS), meeting=r.choice(MEETINGS), project=r.choice(PROJECTS), task=task, task2=task2,
             event=r.choice(EVENTS), team=r.choice(TEAMS), company=r.choice(COMPANIES), past=r.choice(PAST_DAYS),
             rel=r.choice(RELATIVE_DAYS), date=f"{r.choice(MONTHS)} {r.randint(1, 28)}",
             colleague=f"{colleague_first} {r.choice(LAST_NAMES)}", colleague_first=colleague_first)
    c["Day"], c["Colleague"], c["Colleague_first"] = day, c["colleague"], colleague_first
    intents = r.sample(list(INTENTS), 2 if r.random() < 0.35 else 1)
    body: list[str] = []
    if r.random() < 0.6:
        body.append(r.choice(OPENERS))
    for name in intents:
        body.extend(INTENTS[name](r, c))
    if "late" in c:
        body.append(c.pop("late"))
    if r.random() < 0.7:
        body.append(r.choice(CLOSERS))
    text_body = " ".join(body).format(**c)
    subject = r.choice(SUBJECTS[intents[0]]).format(**c)
    header = (f"From: {sender} {r.choice(LAST_NAMES)}\nTo: {to} {r.choice(LAST_NAMES)}\n"
              f"Subject: {subject[0].upper() + subject[1:]}")
    greeting = r.choice(GREETINGS).format(to=to)
    sign = f"{r.choice(SIGN_OFFS)}\n{sender}"
    return f"{header}\n\n{greeting}\n\n{text_body}\n\n{sign}"


def make_emails(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct emails, deterministic for ``seed`` (duplicates are drawn again)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    tries = 0
    while len(seen) < n:
        seen.setdefault(make_email(rng), None)
        tries += 1
        if tries > 20 * n + 1000:                     # the template space is huge; this never happens
            raise RuntimeError(f"could only draw {len(seen)} distinct emails")
    return list(seen)


def email_splits(n_train: int = 4000, n_val: int = 400, n_test: int = 400, seed: int = 0):
    """Fixed, disjoint ``(train, val, test)`` lists of emails for ``seed``."""
    for name, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    emails = make_emails(n_train + n_val + n_test, seed)
    return emails[:n_train], emails[n_train:n_train + n_val], emails[n_train + n_val:]


def completion_pairs(emails: Sequence[str], seed: int = 0, min_prefix_words: int = 4,
                     min_rest_words: int = 3) -> list[tuple[str, str]]:
    """Cut each email after a random word in its body: ``(prefix, rest)`` with ``prefix + rest == email``.

    ``prefix`` ends with the space the user just typed (a word boundary, where Smart Compose may
    trigger); ``rest`` is what the writer typed next, the reference for ExactMatch@N. The cut is
    always in the body: never inside the header, the greeting line or the sign-off block.
    """
    if isinstance(emails, str) or not len(emails):
        raise ValueError("emails must be a non-empty sequence of strings")
    rng = random.Random(seed)
    pairs = []
    for email in emails:
        body_start = email.index("\n\n", email.index("\n\n") + 2) + 2     # after the headers and greeting
        body_end = email.rindex("\n\n")
        spaces = [i for i in range(body_start, body_end) if email[i] == " "]
        ok = [i for i in spaces
              if len(email[:i].split()) >= min_prefix_words and len(email[i + 1:body_end].split()) >= min_rest_words]
        if not ok:
            continue
        cut = rng.choice(ok) + 1
        pairs.append((email[:cut], email[cut:]))
    return pairs
