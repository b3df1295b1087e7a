#!/bin/sh
# Print the path of a working Python of the given version (e.g. 3.10), or nothing.
# Looks on PATH, then in pyenv's and the system's usual places.
want="$1"
for candidate in "python$want" "$HOME"/.pyenv/versions/"$want".*/bin/python"$want" \
                 /usr/local/bin/python"$want" /usr/bin/python"$want"; do
  if "$candidate" -c "import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$want' else 1)" \
      >/dev/null 2>&1; then
    command -v "$candidate" 2>/dev/null || echo "$candidate"
    exit 0
  fi
done
