"""Built-in commands every deployment has: `help`, `ping`, `selftest`, and the DM fallback."""

from __future__ import annotations

import time
from typing import Any

from ..context import Context
from ..events import Click, Message
from ..i18n import N_, _
from ..router import Router

router = Router("core")


@router.command("help", description=N_("what I can do"))
async def help_command(ctx: Context) -> None:
    await ctx.reply(ctx.services.help_text())  # type: ignore[attr-defined]


@router.command("ping", anywhere=True, description=N_("check that I am listening"))
async def ping(ctx: Context, event: Message) -> None:
    lag_ms = max(0, int(time.time() * 1000) - event.post.create_at)
    await ctx.reply(_("pong ({ms} ms after your message)").format(ms=lag_ms))


@router.command("selftest", description=N_("post a button to check that clicks reach me"))
async def selftest(ctx: Context) -> None:
    await ctx.reply(_("Press the button: if it turns green, Mattermost can reach my listener."),
                    attachments=[{
                        "text": _("Button check"),
                        "actions": [ctx.button(_("Press me"), "selftest", data={"at": "start"},
                                               style="primary")],
                    }])


@router.action("selftest")
async def selftest_clicked(ctx: Context, click: Click) -> dict[str, Any]:
    return {
        "update": {"message": _("Button check passed: @{user} pressed it.").format(
                       user=click.user_name),
                   "props": {"attachments": [{"color": "#2e7d32",
                                              "text": _("Clicks reach the listener.")}]}},
        "ephemeral_text": _("Clicks work."),
    }


@router.message(direct=True)
async def unknown_direct(ctx: Context) -> None:
    """A DM that matched nothing gets a pointer to `help` rather than silence."""
    await ctx.reply(_("I did not understand that. Send `help` to see what I can do."))
