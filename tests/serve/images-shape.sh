#!/bin/sh
# tests/serve/images-shape.sh — `vlm-bench serve`'s image workload shapes: the faithful shape's
# FLOP proportions are within 10% of qwen2-vl-2b's under DashInfer-VLM's conversation and every
# printed FLOP figure agrees with an independent recount (images-shape-check.py); then both
# shapes run end to end in one --quick run (positive QPS for each, no failed request). No timing
# is asserted.
set -eu
bench=$1
check=$(dirname "$0")/images-shape-check.py
"$bench" serve --describe-images | python3 "$check" --proportions
"$bench" serve --workload images --image-shape both --quick --concurrency 2 --json |
	tail -n 1 |
	python3 "$check" --ran
