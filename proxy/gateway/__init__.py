"""The HTTP side: the app, the request pipeline (identify → admit → forward → relay →
settle), streaming, replays, observability and the listeners' own limits."""
