"""Agent types by name, as campaign files refer to them (`sources[].type`), and their construction.

A campaign's `params` come from a YAML file a person wrote, so mistakes (an unknown type, a
misspelt parameter, a missing base_url) are reported in words that name the source type and
the parameter, never as a bare constructor TypeError.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from agents.base import Agent
from agents.bluesky import BlueskyAgent
from agents.browser import BrowserAgent
from agents.demo_api import DemoApiAgent
from agents.errors import AgentConfigError
from agents.feeds import RssAgent
from agents.fetch import Fetcher
from agents.mastodon import MastodonAgent
from agents.reddit import RedditAgent
from agents.site import SiteAgent
from agents.telegram import TelegramAgent
from agents.web import WebAgent
from agents.youtube import YouTubeAgent
from agents.ytdlp_source import YtdlpSourceAgent
from storage.blobs import BlobStore


@dataclass(frozen=True)
class AgentType:
    name: str
    factory: Callable[..., Agent]
    injected: tuple[str, ...]  # constructor arguments the runtime supplies, never the campaign file
    description: str

    def params(self) -> dict[str, inspect.Parameter]:
        """The constructor parameters a campaign may set."""
        sig = inspect.signature(self.factory)
        return {n: p for n, p in sig.parameters.items() if n not in self.injected and n != "self"}


def _register(*types: AgentType) -> dict[str, AgentType]:
    registry: dict[str, AgentType] = {}
    for t in types:
        if t.name in registry:
            raise RuntimeError(f"agent type {t.name!r} is registered twice")
        registry[t.name] = t
    return registry


AGENT_TYPES: dict[str, AgentType] = _register(
    AgentType("demo_api", DemoApiAgent, ("fetcher",), "the demo platform's JSON search API"),
    AgentType("browser", BrowserAgent, ("blobs", "allow_networks"), "a JS-rendered feed read in headless Chromium"),
    AgentType("mastodon", MastodonAgent, ("fetcher",), "Mastodon hashtag timelines and status search"),
    AgentType("bluesky", BlueskyAgent, ("fetcher",), "Bluesky post search (app.bsky.feed.searchPosts)"),
    AgentType("reddit", RedditAgent, ("fetcher",), "Reddit search and subreddit listings (JSON API)"),
    AgentType("youtube", YouTubeAgent, ("fetcher",), "YouTube channel / playlist Atom feeds; media via yt-dlp"),
    AgentType("rss", RssAgent, ("fetcher",), "one RSS 2.0 or Atom feed; media from enclosures, media:content/thumbnail and inline <img>"),
    AgentType("web", WebAgent, ("fetcher",), "web pages, optionally following same-host links breadth first; one post per page"),
    AgentType("telegram", TelegramAgent, ("fetcher",), "a public Telegram channel's t.me/s web preview, paged with ?before="),
    AgentType("site", SiteAgent, ("fetcher",), "any public site described by a site profile (agents/profiles, docs/site-profiles.md)"),
    AgentType("ytdlp", YtdlpSourceAgent, ("fetcher",), "channel, user, playlist, hashtag or search URLs of any site yt-dlp supports"),
)


def build_agent(type_name: str, params: Mapping[str, Any], *, fetcher: Fetcher, blobs: BlobStore) -> Agent:
    """Construct the agent `type_name` from campaign `params`; AgentConfigError names any mistake."""
    agent_type = AGENT_TYPES.get(type_name)
    if agent_type is None:
        raise AgentConfigError(f"unknown agent type {type_name!r}; known types: {', '.join(sorted(AGENT_TYPES))}")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise AgentConfigError(f"{type_name}: params must be a mapping, got {type(params).__name__}")

    accepted = agent_type.params()
    supplied = sorted(set(params) & set(agent_type.injected))
    if supplied:
        raise AgentConfigError(f"{type_name}: {', '.join(supplied)} is supplied by the runtime, not by params")
    unknown = sorted(str(k) for k in params if k not in accepted)
    if unknown:
        raise AgentConfigError(
            f"{type_name}: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )
    missing = [n for n, p in accepted.items() if p.default is inspect.Parameter.empty and n not in params]
    if missing:
        raise AgentConfigError(f"{type_name}: missing required parameter(s) {', '.join(missing)}")

    # The browser gets the fetcher's allow_networks: its guard refuses the same addresses (issue 16).
    runtime = {"fetcher": fetcher, "blobs": blobs, "allow_networks": tuple(fetcher.policy.allow_networks)}
    kwargs = {**{n: runtime[n] for n in agent_type.injected}, **params}
    try:
        return agent_type.factory(**kwargs)
    except (TypeError, ValueError) as exc:
        # Constructors validate their own values; prefix the source type so the message is findable.
        raise AgentConfigError(f"{type_name}: {exc}") from exc
