@echo off
rem Build and install copydata with this machine's compiler (MSVC, through setuptools and
rem cffi), then run the test suite against the installed package. Arguments go to pytest.
setlocal
cd /d "%~dp0"

rem "if errorlevel" rather than "||", which Wine 8.0's cmd runs even after a success.
python -m pip install --upgrade pip
if errorlevel 1 exit /b 1
python -m pip install ".[tests]"
if errorlevel 1 exit /b 1

rem From inside tests\, "import copydata" finds the installed package, not the source tree
rem (which has no compiled _core); with COPYDATA_EXPECT_INSTALLED=1 the tests' conftest stops
rem the run if it is the source tree all the same.
set COPYDATA_EXPECT_INSTALLED=1
pushd tests
python -m pytest -c ..\pyproject.toml --rootdir .. %*
set result=%ERRORLEVEL%
popd
exit /b %result%
