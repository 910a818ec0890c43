"""Raw tree → the frozen model: effective values, every problem collected.

Owns the orchestration (virtual blocks, then globals), the effective per-virtual values that ldirectord
computes from virtual and global settings (the mutual checktimeout/negotiatetimeout
fallback of ld_setup, checkinterval honoured per virtual only with fork=yes, alert settings,
the global fallback inherited by a virtual), duplicate virtual detection and the warnings.
Pure: the machine is reached only through the Environment.
"""

from __future__ import annotations

from ldirectord.config.directives import VirtualDraft
from ldirectord.config.environment import Environment
from ldirectord.config.global_directives import GlobalDraft, build_globals, read_globals
from ldirectord.config.location import Location
from ldirectord.config.model import (
    CheckSpec,
    Config,
    DaemonStatus,
    Fallback,
    GlobalConfig,
    Protocol,
    Service,
    VirtualService,
)
from ldirectord.config.parser import RawConfig
from ldirectord.config.values import EXTENSIONS, Problems
from ldirectord.config.virtual import read_virtual

DEFAULT_CHECKTIMEOUT = 5
DEFAULT_NEGOTIATETIMEOUT = 30


def _timeouts(v: VirtualDraft, g: GlobalConfig) -> tuple[int, int]:
    """ld_setup: checktimeout and negotiatetimeout are mutual defaults."""
    chain_ct = (v.checktimeout, v.negotiatetimeout, g.checktimeout, g.negotiatetimeout)
    chain_nt = (v.negotiatetimeout, v.checktimeout, g.negotiatetimeout, g.checktimeout)
    ct = next((int(x) for x in chain_ct if x is not None), DEFAULT_CHECKTIMEOUT)
    nt = next((int(x) for x in chain_nt if x is not None), DEFAULT_NEGOTIATETIMEOUT)
    return ct, nt


def _effective_fallback(v: VirtualDraft, g: GlobalDraft) -> Fallback | None:
    """fallback_find: the virtual's own, else the global one of its family and protocol."""
    if v.fallback is not None:
        return v.fallback
    pair = g.fallback.get(v.family)
    if pair is None:
        return None
    chosen = pair[1] if v.protocol == "udp" else pair[0]
    if chosen.port:
        return chosen
    return Fallback(chosen.address, v.port, chosen.method, chosen.location)


def build_virtual(v: VirtualDraft, g: GlobalConfig, gd: GlobalDraft) -> VirtualService:
    ct, nt = _timeouts(v, g)
    interval = float(v.checkinterval) if g.fork and v.checkinterval else g.checkinterval
    check = CheckSpec(
        checktype=v.checktype,
        combined_n=v.combined_n,
        service=v.service or Service.NONE,
        checkport=v.checkport,
        request=v.request,
        receive=v.receive,
        virtualhost=v.virtualhost,
        httpmethod=v.httpmethod,
        login=v.login,
        passwd=v.passwd,
        database=v.database,
        secret=v.secret,
        checkcommand=v.checkcommand,
        checktimeout=float(ct),
        negotiatetimeout=float(nt),
        checkcount=v.checkcount if v.checkcount is not None else g.checkcount,
        failurecount=v.failurecount if v.failurecount is not None else g.failurecount,
        checkinterval=interval,
        rise=v.rise if v.rise is not None else g.rise,
        fastinterval=float(v.fastinterval) if v.fastinterval is not None else g.fastinterval,
    )
    return VirtualService(
        family=v.family,
        protocol=Protocol(v.protocol),
        address=v.address,
        port=v.port,
        fwmark=v.fwmark,
        address_as_written=v.address_as_written,
        scheduler=v.scheduler,
        persistent=v.persistent,
        netmask=v.netmask,
        schedflags=v.schedflags,
        ops=v.ops,
        check=check,
        reals=tuple(v.reals),
        fallback=_effective_fallback(v, gd),
        fallbackcommand=v.fallbackcommand if v.fallbackcommand is not None else g.fallbackcommand,
        quiescent=g.quiescent if v.quiescent is None else v.quiescent,
        cleanstop=g.cleanstop if v.cleanstop is None else v.cleanstop,
        emailalert=g.emailalert if v.emailalert is None else v.emailalert,
        emailalertfreq=g.emailalertfreq if v.emailalertfreq is None else v.emailalertfreq,
        emailalertstatus=_statuses(v.emailalertstatus, g.emailalertstatus),
        smtp=v.smtp if v.smtp is not None else g.smtp,
        monitorfile=v.monitorfile,
        servicename=v.servicename,
        comment=v.comment,
        location=v.location,
    )


def _statuses(
    mine: frozenset[DaemonStatus] | None, theirs: frozenset[DaemonStatus]
) -> frozenset[DaemonStatus]:
    return theirs if mine is None else mine


def _extensions_used(raw: RawConfig) -> tuple[str, ...]:
    """The extension directives written (column 0 or in a block): Perl ldirectord rejects them."""
    lines = [d for d in raw.globals if not d.text[:1].isspace()]
    lines += [d for virtual in raw.virtuals for d in virtual.directives]
    return tuple(sorted({d.name for d in lines if d.name in EXTENSIONS}))


def _slow_fastinterval(
    check: CheckSpec, loc: Location | None, what: str, problems: Problems
) -> None:
    if loc is None or check.fastinterval is None or check.fastinterval < check.checkinterval:
        return
    problems.warn(
        loc,
        f"fastinterval {check.fastinterval:g} s is not shorter than the checkinterval of "
        f"{what} ({check.checkinterval:g} s): it changes nothing",
        "fastinterval only ever shortens the wait after a failed check",
    )


def validate(raw: RawConfig, env: Environment, path: str) -> tuple[Config | None, Problems]:
    """Raw tree → Config (None when there is any error); every problem is in Problems."""
    problems = Problems()
    drafts = [read_virtual(virtual, problems, env) for virtual in raw.virtuals]
    gd = read_globals(raw, problems, env)
    g = build_globals(gd, problems, env)
    for raw_virtual, draft in zip(raw.virtuals, drafts, strict=True):
        if raw_virtual.loc.line == raw.line_count and draft.valid:
            problems.error(
                raw_virtual.loc,
                "duplicate virtual server",
                "ldirectord reads a virtual= line that ends the file twice: "
                "add its real= lines, or an empty line after it",
            )
    seen: dict[str, Location] = {}
    virtuals: list[VirtualService] = []
    for draft in drafts:
        if not draft.valid:
            continue
        virtual = build_virtual(draft, g, gd)
        if virtual.vid in seen:
            problems.error(
                draft.location,
                "duplicate virtual server",
                f"{virtual.vid} is already defined at line {seen[virtual.vid].line}",
            )
        seen.setdefault(virtual.vid, draft.location)
        _slow_fastinterval(
            virtual.check, draft.fastinterval_loc, f"virtual service {virtual.vid}", problems
        )
        if draft.checkinterval is not None and not g.fork and draft.checkinterval_loc:
            problems.warn(
                draft.checkinterval_loc,
                f"checkinterval in virtual service {virtual.vid} ignored when fork=no",
            )
        virtuals.append(virtual)
    _slow_fastinterval(
        CheckSpec(checkinterval=g.checkinterval, fastinterval=g.fastinterval),
        gd.extension_locs.get("fastinterval"),
        "the global section",
        problems,
    )
    problems.errors.sort(key=lambda p: (p.location.line, p.location.col))
    problems.warnings.sort(key=lambda p: (p.location.line, p.location.col))
    if problems.errors:
        return None, problems
    warnings = tuple(p.render() for p in problems.warnings)
    return Config(path, g, tuple(virtuals), warnings, _extensions_used(raw)), problems
