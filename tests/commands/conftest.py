import sys
from pathlib import Path

# tests/engine_data.py: shared helpers of the engine's tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
