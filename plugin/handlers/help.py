"""`help`, and the answer to a direct message that nothing else took. Included last, so that
every feature's commands and triggers come first."""

from __future__ import annotations

from ..context import Context
from ..i18n import N_, _
from ..router import Router

router = Router("core")


@router.command("help", description=N_("what I can do"))
async def help_command(ctx: Context) -> None:
    await ctx.reply(ctx.services.help_text())


@router.message(direct=True)
async def unknown_direct(ctx: Context) -> None:
    """A DM that matched nothing gets a pointer to `help` rather than silence."""
    await ctx.reply(_("I did not understand that. Send `help` to see what I can do."))
