#!/bin/sh
# minimize_corpus.sh FUZZER SEEDS WORK: replaces the committed corpus SEEDS with the smallest
# set of inputs (libFuzzer -merge=1) that keeps the coverage of SEEDS and of WORK/corpus (what
# the last ctest run found). A kept input that was a committed seed keeps its name (make_corpus.py
# names them by what they are); a new one is named found-<sha1>. The regress-* seeds (fixed
# findings, README) are always kept.
set -eu
fuzzer=$1 seeds=$2 work=$3
rm -rf "$work/merged" "$work/old"
mkdir -p "$work/merged" "$work/corpus"
cp -r "$seeds" "$work/old"
"$fuzzer" -merge=1 "$work/merged" "$work/old" "$work/corpus"
rm -rf "$seeds"
mkdir -p "$seeds"
for f in "$work"/old/*; do
  sum=$(sha1sum "$f" | cut -d' ' -f1)
  case $(basename "$f") in
    regress-*) cp "$f" "$seeds/"; rm -f "$work/merged/$sum" ;;
    *) if [ -e "$work/merged/$sum" ]; then cp "$f" "$seeds/"; rm -f "$work/merged/$sum"; fi ;;
  esac
done
for f in "$work"/merged/*; do
  [ -e "$f" ] && cp "$f" "$seeds/found-$(basename "$f")"
done
echo "minimize_corpus: $(ls "$work/old" | wc -l) -> $(ls "$seeds" | wc -l) inputs in $seeds"
