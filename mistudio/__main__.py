from mistudio.cli import main

raise SystemExit(main())
