"""`selftest`: a button whose click proves that Mattermost reaches the bot's listener."""

from __future__ import annotations

from typing import Any

from ..context import Context
from ..events import Click
from ..i18n import N_, _
from ..router import Router

router = Router("selftest")


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
