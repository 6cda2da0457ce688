from firemlip.cli import main

raise SystemExit(main())
