from imgtag.cli import main

main()
