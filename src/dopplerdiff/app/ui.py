"""The Gradio page: four tabs wired to ``app.handlers``; every error becomes a message in the page.

gradio is an optional extra, so this module is imported only by ``dopplerdiff app`` (``require_gradio``
turns its absence into one clear error).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Callable
from typing import Any

from dopplerdiff.app import handlers as h
from dopplerdiff.errors import DopplerDiffError

log = logging.getLogger(__name__)
INSTALL = "pip install -e '.[app]'"
TABS = ("generate", "edit", "identify", "report")
PICTURE = {"type": "numpy", "format": "png", "interactive": False}  # grids download as PNG, not webp


def require_gradio() -> Any:
    """The gradio module, or one error saying how to install it."""
    if importlib.util.find_spec("gradio") is None:
        raise DopplerDiffError(f"`dopplerdiff app` needs gradio, an optional extra: {INSTALL}")
    import gradio

    return gradio


def _in_page(gr: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` whose errors show as a message in the page (gr.Error), never as a stack trace."""
    @functools.wraps(fn)
    def wrapped(*args: Any) -> Any:
        try:
            return fn(*args)
        except DopplerDiffError as exc:
            raise gr.Error(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the page gets one line, the server log the traceback
            log.exception("app request failed")
            raise gr.Error(f"unexpected error ({type(exc).__name__}: {exc}); see the server log") from None
    return wrapped


def _generate_tab(gr: Any, ctx: h.AppContext, s: dict[str, Any]) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            ident = gr.Dropdown(s["identities"], value=s["identities"][0], label="Identity")
            num = gr.Slider(1, h.MAX_SAMPLES, value=4, step=1, label="Samples")
            guidance = gr.Slider(0.0, 10.0, value=s["guidance"], step=0.1, label="Guidance")
            steps = gr.Slider(1, 200, value=s["steps"], step=1, label="Steps")
            sampler = gr.Dropdown(s["samplers"], value=s["sampler"], label="Sampler")
            seed = gr.Number(0, precision=0, label="Seed")
            strategy = gr.Radio(list(h.STRATEGIES), value="prior", label="Strategy")
            strength = gr.Slider(0.05, 1.0, value=s["strength"], step=0.05, label="Strength (real-seeded)")
            fmt = gr.Radio(["png", "npy", "jpg"], value="png", label="Download format")
            go = gr.Button("Generate", variant="primary")
        with gr.Column(scale=2):
            grid = gr.Image(label="Samples", **PICTURE)
            download = gr.File(label="Download (data layout + manifest.json)")

    def run(ident, num, guidance, steps, sampler, seed, strategy, strength, fmt):
        out = h.generate(ctx, ident, num, guidance=guidance, steps=steps, sampler=sampler, seed=seed,
                         strategy=strategy, strength=strength, fmt=fmt)
        return out["grid"], str(out["zip"])

    go.click(_in_page(gr, run), [ident, num, guidance, steps, sampler, seed, strategy, strength, fmt],
             [grid, download], api_name="generate")


def _edit_tab(gr: Any, ctx: h.AppContext, s: dict[str, Any]) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            files = gr.File(file_count="multiple", type="filepath", label="Windows (png, jpg, npy, mat)")
            ident = gr.Dropdown(s["identities"], value=s["identities"][0], label="Target identity")
            op = gr.Radio(["transfer", "inpaint"], value="transfer", label="Edit")
            strength = gr.Slider(0.05, 1.0, value=s["strength"], step=0.05, label="Strength (transfer)")
            start = gr.Slider(0.0, 1.0, value=0.4, step=0.01, label="Span start (inpaint, fraction)")
            end = gr.Slider(0.0, 1.0, value=0.6, step=0.01, label="Span end (inpaint, fraction)")
            guidance = gr.Slider(0.0, 10.0, value=s["guidance"], step=0.1, label="Guidance")
            steps = gr.Slider(1, 200, value=s["steps"], step=1, label="Steps")
            seed = gr.Number(0, precision=0, label="Seed")
            go = gr.Button("Edit", variant="primary")
        with gr.Column(scale=2):
            grid = gr.Image(label="Input (top) and edited (bottom)", **PICTURE)
            notes = gr.Textbox(label="Notes", interactive=False)
            download = gr.File(label="Download")

    def run(files, ident, op, strength, start, end, guidance, steps, seed):
        if op == "transfer":
            out = h.edit_transfer(ctx, files, ident, strength=strength, guidance=guidance, steps=steps,
                                  seed=seed)
        else:
            out = h.edit_inpaint(ctx, files, ident, start=start, end=end, guidance=guidance, steps=steps,
                                 seed=seed)
        return out["grid"], "\n".join(out["notes"]) or "-", str(out["zip"])

    go.click(_in_page(gr, run), [files, ident, op, strength, start, end, guidance, steps, seed],
             [grid, notes, download], api_name="edit")


def _identify_tab(gr: Any, ctx: h.AppContext, s: dict[str, Any]) -> None:
    if not s["has_index"]:
        gr.Markdown("No index: start the app with `--index INDEX` (made by `dopplerdiff embed`) to identify.")
    with gr.Row():
        with gr.Column(scale=1):
            files = gr.File(file_count="multiple", type="filepath", label="Windows of one or more walks")
            fuse = gr.Checkbox(False, label="All windows are one walk (fuse scores)")
            go = gr.Button("Identify", variant="primary")
        with gr.Column(scale=2):
            table = gr.Dataframe(headers=["windows", "decision", "score", "best", "ranking"],
                                 label="Decision", interactive=False)
            grid = gr.Image(label="Query and nearest indexed windows", **PICTURE)
            notes = gr.Textbox(label="Notes", interactive=False)

    def run(files, fuse):
        out = h.identify_uploads(ctx, files, fuse=fuse)
        rows = [[r["windows"], r["decision"], r["score"], r["best"], r["ranking"]] for r in out["rows"]]
        t = out["threshold"]
        note = [f"threshold {t:.3f}" if t is not None else "closed set (no threshold)", *out["notes"]]
        return rows, out["grid"], "\n".join(note)

    go.click(_in_page(gr, run), [files, fuse], [table, grid, notes], api_name="identify")


def build(ctx: h.AppContext) -> Any:
    """The gr.Blocks page of an opened run."""
    gr = require_gradio()
    s = h.settings(ctx)
    with gr.Blocks(title=f"dopplerdiff - {ctx.run.name}") as page:
        gr.Markdown(f"## dopplerdiff · run `{ctx.run}`")
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                _generate_tab(gr, ctx, s)
            with gr.Tab("Edit", id="edit"):
                _edit_tab(gr, ctx, s)
            with gr.Tab("Identify", id="identify"):
                _identify_tab(gr, ctx, s)
            with gr.Tab("Report", id="report"):
                gr.HTML(h.report_html(ctx))

        def open_tab(request: Any) -> Any:
            # ?tab=edit opens that tab: links to one tab, and screenshots of each
            tab = request.query_params.get("tab", "generate") if request else "generate"
            return gr.Tabs(selected=tab if tab in TABS else "generate")

        # gradio passes the request to a parameter annotated gr.Request; string annotations (this module's
        # `from __future__ import annotations`) cannot name the lazily imported module, so set it here
        open_tab.__annotations__["request"] = gr.Request
        page.load(open_tab, None, tabs, api_name=False)
    return page


def launch(ctx: h.AppContext, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> Any:
    """Serve the page; ``block`` False returns at once (tests, scripts)."""
    page = build(ctx)
    page.queue().launch(server_name=host, server_port=port, prevent_thread_lock=not block,
                        allowed_paths=[str(ctx.workdir)], show_error=True, quiet=True)
    return page
