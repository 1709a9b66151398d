use std::process::ExitCode;

#[rocket::main]
async fn main() -> ExitCode {
    let rocket = match sperform::build(sperform::config::figment()) {
        Ok(rocket) => rocket,
        Err(err) => {
            eprintln!("sperform: {err}");
            return ExitCode::FAILURE;
        }
    };
    match rocket.launch().await {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sperform: {}", err.kind());
            ExitCode::FAILURE
        }
    }
}
