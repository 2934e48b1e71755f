"""Export of trained scheduler models to integer-only C (issue 5).

torch -> ONNX (onnx_graph) -> streaming IR (ir) -> power-of-two quantization (quantize) ->
exact integer reference (intref) -> C header, vectors and blob (codegen_c, blob, vectors),
checked with gcc (cbuild, harness/). `python -m export ckpt_path=... out=...` runs it all.
"""
