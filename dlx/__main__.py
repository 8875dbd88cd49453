from dlx.cli import main

main()
