import sys

from mlpmnist.cli import main

sys.exit(main())
