from cnnctl.cli.app import main

main()
