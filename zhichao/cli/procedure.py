"""``zhichao center cases STEP``, ``center due`` and ``center audit verify``: the procedure
after review from the command line. Each command parses, calls one function of
:mod:`center.procedure` in one transaction, and prints what happened; a refused step
prints its one-line reason and changes nothing (exit status 2).

Steps are taken by enforcement officers of the staff register (``--officer ID``); a step
recorded for an earlier day (a letter posted, a payment the bank reported) takes
``--on DATE``, never a day to come.
"""

import argparse
import json
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from center import audit, procedure
from center.china_time import today as china_today
from center.procedure_models import CaseDocument
from center.service import open_db
from zhichao.cli.center_common import settings_of
from zhichao.errors import ConfigError

STEPS = {
    "review": "the first officer reviews the evidence (行政处罚法 Art. 41)",
    "approve": "a second officer approves: the case is filed (立案, Art. 42)",
    "party": "set the party's or the trip's facts (name, address, driver, …)",
    "notify": "render and deliver the notice (告知, Arts. 44, 45, 63)",
    "defence": "record the defence: received (with the answer), waived or lapsed",
    "legal-review": "法制审核 by a legal reviewer (Art. 58), where required",
    "decide": "decide with reasons, by two officers: the graded penalty or no penalty",
    "serve": "serve the decision (Art. 61)",
    "pay": "record the payment the collecting bank reports (Arts. 67, 72)",
    "close": "close a paid case, or one with nothing to pay",
    "reject": "reject a case before its decision, with a reason code",
}


def _day(text: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a date YYYY-MM-DD (got {text!r})") from None
    return day


def add_procedure_commands(cases: argparse._SubParsersAction,
                           center: argparse._SubParsersAction,
                           config: Callable[[argparse.ArgumentParser],
                                            argparse.ArgumentParser]) -> None:
    """Register the steps under ``center cases``, and ``center due`` / ``center audit``."""
    for step, words in STEPS.items():
        p = config(cases.add_parser(step, help=words, description=words))
        p.add_argument("case_id", type=int, metavar="ID")
        p.add_argument("--officer", required=True, action="append", metavar="ID",
                       help="the officer's id in the staff register"
                       + (" (twice: two officers)" if step == "decide" else ""))
        p.add_argument("--on", type=_day, metavar="DATE",
                       help="the day the step was taken (default: today, China time)")
        _step_options(step, p)
        p.set_defaults(run=run_step, step=step)
    docs = config(cases.add_parser("documents", help="a case's documents; --out writes "
                                   "their PDFs"))
    docs.add_argument("case_id", type=int, metavar="ID")
    docs.add_argument("--out", type=Path, metavar="DIR", help="write each PDF here")
    docs.set_defaults(run=run_documents)

    due = config(center.add_parser("due", help="deadlines of open cases falling due"))
    due.add_argument("--within", type=int, default=7, metavar="DAYS",
                     help="how far ahead to look (default 7 days); past ones always show")
    due.add_argument("--json", action="store_true", help="one JSON object per deadline")
    due.set_defaults(run=run_due)
    log = center.add_parser("audit", help="the audit trail").add_subparsers(
        dest="audit_command", metavar="ACTION", required=True)
    verify = config(log.add_parser("verify", help="check the audit hash chain"))
    verify.set_defaults(run=run_audit_verify)


def _step_options(step: str, p: argparse.ArgumentParser) -> None:
    if step in ("review", "approve", "decide", "reject", "legal-review"):
        p.add_argument("--note", default="", metavar="TEXT", help="the reason, recorded")
    if step == "party":
        for key in procedure.PARTY_FIELDS:
            p.add_argument(f"--{key.replace('_', '-')}", dest=f"fact_{key}", metavar="TEXT")
    if step == "defence":
        p.add_argument("--outcome", required=True, choices=procedure.DEFENCE_OUTCOMES)
        p.add_argument("--text", default="", metavar="TEXT", help="the party's statement")
        p.add_argument("--answer", default="", metavar="TEXT",
                       help="the authority's answer to it")
        p.add_argument("--hearing", action="store_true", help="the party asks for a hearing")
    if step == "legal-review":
        verdict = p.add_mutually_exclusive_group(required=True)
        verdict.add_argument("--passed", action="store_true", dest="passed")
        verdict.add_argument("--not-passed", action="store_false", dest="passed")
    if step == "decide":
        p.add_argument("--fine-yuan", type=float, metavar="N",
                       help="the fine (default: the graded fine); lower needs --note")
        p.add_argument("--no-penalty", choices=procedure.NO_PENALTY_REASONS,
                       help="no penalty: first_violation (with --commitment) or education")
        p.add_argument("--commitment", default="", metavar="TEXT",
                       help="the party's commitment (首违不罚, 告知承诺)")
    if step == "pay":
        p.add_argument("--amount-yuan", type=float, required=True, metavar="N")
    if step == "reject":
        p.add_argument("--reason", required=True, metavar="CODE",
                       help="a reason code of the procedure table")


def _desk(args: argparse.Namespace, settings, *, notify: bool) -> procedure.Desk:
    today = china_today()
    day = getattr(args, "on", None) or today
    if day > today:
        raise ConfigError(f"--on {day}: a step cannot be recorded for a day to come "
                          f"(today is {today})")
    return procedure.desk_for(settings, today=day, notify=notify)


def _call(step: str, session: Session, args: argparse.Namespace, desk: procedure.Desk):
    """The procedure function of the step, with the arguments of its options."""
    case_id, officers = args.case_id, args.officer
    if step != "decide" and len(officers) > 1:
        raise ConfigError(f"{step} is taken by one officer (got --officer {len(officers)} "
                          "times)")
    one = officers[0]
    if step == "party":
        facts = {k: getattr(args, f"fact_{k}") for k in procedure.PARTY_FIELDS
                 if getattr(args, f"fact_{k}") is not None}
        return procedure.set_party(session, case_id, one, desk, **facts)
    if step == "defence":
        return procedure.defence(session, case_id, one, desk, outcome=args.outcome,
                                 text=args.text, answer=args.answer, hearing=args.hearing)
    if step == "legal-review":
        return procedure.legal_review(session, case_id, one, desk, passed=args.passed,
                                      note=args.note)
    if step == "decide":
        return procedure.decide(session, case_id, tuple(officers), desk,
                                no_penalty=args.no_penalty, fine_yuan=args.fine_yuan,
                                commitment=args.commitment, note=args.note)
    if step == "pay":
        return procedure.pay(session, case_id, one, desk, amount_yuan=args.amount_yuan)
    if step == "reject":
        return procedure.reject(session, case_id, one, desk, reason=args.reason,
                                note=args.note)
    if step in ("review", "approve"):
        return getattr(procedure, step)(session, case_id, one, desk, args.note)
    return getattr(procedure, step)(session, case_id, one, desk)


def run_step(args: argparse.Namespace) -> int:
    """Take one step of the procedure in one transaction."""
    settings = settings_of(args)
    desk = _desk(args, settings, notify=args.step in ("notify", "serve"))
    engine = open_db(settings)
    with Session(engine) as session, session.begin():
        _call(args.step, session, args, desk)
        case = procedure.get_case(session, args.case_id)
        status = case.status
    Console(highlight=False).print(f"case {args.case_id}: {args.step} done, now {status}")
    return 0


def run_documents(args: argparse.Namespace) -> int:
    """List a case's documents (kind, hash, size); with --out, write their PDFs."""
    engine = open_db(settings_of(args))
    with Session(engine) as session:
        procedure.get_case(session, args.case_id)
        docs = session.scalars(select(CaseDocument).where(
            CaseDocument.case_id == args.case_id).order_by(CaseDocument.id)).all()
        rows = [(d.id, d.kind, d.sha256, d.pdf) for d in docs]
    table = Table(title=f"case {args.case_id}: documents", header_style="bold")
    for name in ("id", "kind", "PDF SHA-256", "bytes", "file"):
        table.add_column(name, overflow="fold")
    for doc_id, kind, sha, pdf in rows:
        path = ""
        if args.out is not None:
            try:
                args.out.mkdir(parents=True, exist_ok=True)
                target = args.out / f"case{args.case_id}-{doc_id}-{kind}.pdf"
                target.write_bytes(pdf)
            except OSError as exc:
                raise ConfigError(f"--out {args.out}: cannot write: "
                                  f"{exc.strerror or exc}") from None
            path = str(target)
        table.add_row(str(doc_id), kind, sha, str(len(pdf)), escape(path))
    Console(highlight=False, soft_wrap=True).print(table)
    return 0


def run_due(args: argparse.Namespace) -> int:
    """What falls due or is overdue, soonest first."""
    settings = settings_of(args)
    desk = procedure.desk_for(settings, notify=False)
    engine = open_db(settings)
    with Session(engine) as session:
        items = procedure.due(session, desk, args.within)
    if args.json:
        for i in items:
            sys.stdout.write(json.dumps({"case_id": i.case_id, "plate": i.plate,
                                         "status": i.status, "what": i.what,
                                         "due": i.due.isoformat(), "days_left": i.days_left,
                                         "overdue": i.overdue, "source": i.source},
                                        ensure_ascii=False) + "\n")
        return 0
    table = Table(title=f"due by {desk.today} + {args.within} days", header_style="bold")
    for name in ("case", "plate", "state", "what", "due", "days left", "source"):
        table.add_column(name, overflow="fold")
    for i in items:
        left = f"[red]{i.days_left}[/]" if i.overdue else str(i.days_left)
        table.add_row(str(i.case_id), escape(i.plate), i.status, i.what, str(i.due), left,
                      escape(i.source))
    Console(highlight=False, soft_wrap=True).print(table)
    return 0


def run_audit_verify(args: argparse.Namespace) -> int:
    """Walk the audit chain; exit status 1 and the first broken entry when it does not
    hold."""
    engine = open_db(settings_of(args))
    with Session(engine) as session:
        checked, broken = audit.verify(session)
        head = audit.head(session)
    console = Console(highlight=False, soft_wrap=True)
    if broken is None:
        console.print(f"audit chain holds: {checked} entries, head {head}")
        return 0
    console.print(f"[red]audit chain broken[/] at entry {broken.entry_id}: {broken.reason} "
                  f"({checked} entries before it hold)")
    return 1
