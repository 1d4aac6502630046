"""The viewer's pages; each module exposes ``render(ctx: viewer.context.Context)``."""
