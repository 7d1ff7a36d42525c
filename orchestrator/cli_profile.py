"""`deepwatch profile ...`: list the shipped site profiles and try one on a live (or local) page.

`profile test` reads one page the way a campaign would (same guarded Fetcher, robots.txt, caps)
and shows what it yielded: the posts, their media, the drops, and the selectors that matched
nothing, so a person writing or fixing a profile sees at once which line to change.
"""
from __future__ import annotations

import json
from typing import List, Optional

import typer
from rich.table import Table

from orchestrator.cli import _fail, app, console

profile_app = typer.Typer(help="Site profiles: describe a public site in YAML, no code (docs/site-profiles.md).",
                          no_args_is_help=True)
app.add_typer(profile_app, name="profile")


@profile_app.command("list")
def profile_list() -> None:
    """The profiles shipped with deepwatch (agents/profiles/*.yaml)."""
    from agents.site_profile import load_profile, shipped_profiles

    table = Table("name", "platform", "kind", "javascript", "description")
    for name in shipped_profiles():
        profile = load_profile(name)
        table.add_row(name, profile.platform, "search" if profile.searches else "listing",
                      "yes" if profile.render.javascript else "no", profile.description)
    console.print(table)


def _vars(pairs: List[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            _fail(f"--var takes NAME=VALUE, got {pair!r}")
        out[name.strip()] = value
    return out


@profile_app.command("test")
def profile_test(
    profile: str = typer.Argument(..., help="A shipped profile name or a .yaml path"),
    term: Optional[str] = typer.Option(None, "--term", help="The search term (profiles whose url takes {term})"),
    var: List[str] = typer.Option([], "--var", help="A profile variable, NAME=VALUE (repeatable)"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Read the site at another origin (a mirror, a saved copy)"),
    page: int = typer.Option(1, "--pages", min=1, max=20, help="How many pages to read"),
    allow_network: List[str] = typer.Option([], "--allow-network", help="CIDR the address guard lets through (e.g. 127.0.0.0/8)"),
    no_robots: bool = typer.Option(False, "--no-robots", help="Ignore robots.txt (only for your own test server)"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON"),
) -> None:
    """Read one page (or --pages N) with PROFILE and show the posts, media and unmatched selectors."""
    from agents.errors import SourceError
    from agents.fetch import Fetcher, FetchPolicy
    from agents.site import SiteAgent
    from agents.site_profile import ProfileError

    try:
        policy = FetchPolicy(allow_networks=tuple(allow_network), respect_robots=not no_robots)
    except ValueError as exc:
        _fail(str(exc))
    with Fetcher(policy) as fetcher:
        try:
            agent = SiteAgent(profile, fetcher=fetcher, vars=_vars(var), base_url=base_url)
        except (ProfileError, ValueError) as exc:
            _fail(str(exc))
        report = {"profile": agent.profile.name, "pages": [], "drops": []}
        cursor = None
        try:
            for _ in range(page):
                url = json.loads(cursor)["url"] if cursor else agent.first_url(term or "")
                result = agent.fetch_page(term or "", cursor)
                report["pages"].append({
                    "url": url,
                    "containers": agent.last.containers,
                    "unmatched": agent.last.unmatched(agent.profile),
                    "posts": [_post_json(p) for p in result.posts],
                    "next": json.loads(result.next_cursor)["url"] if result.next_cursor else None,
                })
                cursor = result.next_cursor
                if cursor is None:
                    break
        except ValueError as exc:
            _fail(str(exc))
        except SourceError as exc:
            report["error"] = str(exc)
        finally:
            agent.close()
        report["drops"] = [{"stage": d.stage, "reason": d.reason, "subject": d.subject, "detail": d.detail}
                           for d in agent.stats.drops]
    if as_json:
        console.print_json(json.dumps(report, ensure_ascii=False))
    else:
        _show(report)
    if report.get("error"):
        raise typer.Exit(1)


def _post_json(post) -> dict:
    return {"id": post.post_id, "url": post.url, "author": post.account, "time": post.created_at.isoformat(),
            "text": post.text, "hashtags": list(post.hashtags),
            "media": [{"kind": m.kind, "url": m.url, **({"resolver": m.resolver} if m.resolver else {})} for m in post.media]}


def _show(report: dict) -> None:
    for number, page in enumerate(report["pages"], 1):
        console.print(f"[bold]page {number}[/] {page['url']}: {page['containers']} post element(s), "
                      f"{len(page['posts'])} post(s)", highlight=False)
        table = Table("id", "time (UTC)", "author", "text", "media")
        for post in page["posts"]:
            text = post["text"].replace("\n", " ")
            table.add_row(post["id"], post["time"][:19], post["author"], text[:60] + ("…" if len(text) > 60 else ""),
                          "\n".join(f"{m['kind']} {m['url']}" for m in post["media"]))
        console.print(table)
        for selector in page["unmatched"]:
            console.print(f"  [yellow]matched nothing:[/] {selector}", highlight=False)
        if page["next"]:
            console.print(f"  next page: {page['next']}", highlight=False)
    for drop in report["drops"]:
        console.print(f"  [red]drop[/] {drop['stage']}/{drop['reason']}: {drop['subject']} {drop['detail']}", highlight=False)
    if report.get("error"):
        console.print(f"[bold red]source error:[/] {report['error']}", highlight=False)
