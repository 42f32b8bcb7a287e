"""`ping`: a quick check that the bot hears you, and how far behind it is."""

from __future__ import annotations

import time

from ..context import Context
from ..events import Message
from ..i18n import N_, _
from ..router import Router

router = Router("ping")


@router.command("ping", anywhere=True, description=N_("check that I am listening"))
async def ping(ctx: Context, event: Message) -> None:
    lag_ms = max(0, int(time.time() * 1000) - event.post.create_at)
    await ctx.reply(_("pong ({ms} ms after your message)").format(ms=lag_ms))
