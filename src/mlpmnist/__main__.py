from mlpmnist.cli import main

raise SystemExit(main())
