"""The benchmarks behind `mullama-tui bench`: ratios measured side by side in one run.

The machine is shared and noisy, so each benchmark interleaves the things it compares
(A, B, A, B, ...) on the same model, prompt, token count and seed, and reports medians
and the ratio of medians. Every tok/s is over a fixed number of generated tokens
(`ignore_eos` for the engine, an end-of-text logit bias for llama-cpp-python): a sampled
run that ends after 18 tokens measures noise. One module per benchmark:

- `engine`:   the engine against llama-cpp-python and a plain decode loop (`bench`);
- `overhead`: the engine's host time per step and per sequence (`bench --overhead`);
- `batched`:  compare panes in one batch against one after another (`bench --batched`);
- `ui`:       the real TUI against the headless engine, main and compare screens (`bench --ui`);
- `load`:     every fixed thread count and auto beside busy processes (`bench --load`);
- `server`:   concurrent streaming clients against one (`bench --server`);
- `soak`:     a mixed crowd of clients against `serve` for a while (`bench --soak`);
- `remote`:   an OpenAI-compatible server as the client sees it (`bench --backend openai`).

Benchmarks never touch the user's files: whatever they save goes to a private temporary
home (`common.private_home`).
"""
