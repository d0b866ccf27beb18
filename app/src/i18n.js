// Text people read, in Chinese and English (the server's console does the same:
// server/src/console/i18n.rs). The language comes from the browser unless the technician
// chose one with the switch (kept in localStorage).

const TEXT = {
  title: ["fieldsync 技术员", "fieldsync technician"],
  loading: ["正在打开…", "Opening…"],
  switch_to: ["English", "中文"],
  online: ["在线", "Online"],
  offline: ["离线", "Offline"],
  connecting: ["正在连接…", "Connecting…"],
  revoked: ["此设备已被停用，不再同步", "This device was revoked: it no longer syncs"],
  enroll_heading: ["登记此设备", "Enroll this device"],
  enroll_help: [
    "输入服务台给您的一次性登记码。此设备会生成自己的密钥，私钥不离开设备。",
    "Enter the one-time code the desk gave you. This device makes its own key; the private key never leaves it.",
  ],
  code_label: ["登记码", "Enrollment code"],
  enroll_button: ["登记", "Enroll"],
  enrolling: ["正在登记…", "Enrolling…"],
  no_webcrypto: [
    "此浏览器不支持 Ed25519 密钥（WebCrypto），无法登记。",
    "This browser has no Ed25519 keys (WebCrypto): it cannot enroll.",
  ],
  enroll_offline: ["登记需要网络连接。", "Enrolling needs the network."],
  not_enrolled: ["未登记", "Not enrolled"],
  unknown_enrollment_code: [
    "服务台没有发出过这个登记码：请核对，或向服务台要一个新的。",
    "The desk issued no such code: check it, or ask the desk for a new one.",
  ],
  enrollment_code_used: [
    "这个登记码已经用过了（一个码只能登记一台设备）：请向服务台要一个新的。",
    "This code was already used (a code enrolls one device): ask the desk for a new one.",
  ],
  enrollment_code_expired: ["这个登记码已过期：请向服务台要一个新的。", "This code has expired: ask the desk for a new one."],
  invalid_enrollment_code: [
    "登记码的格式不对（12 个字母或数字，如 K7QM-2F9D-XW4T）。",
    "That is not an enrollment code (12 letters or digits, like K7QM-2F9D-XW4T).",
  ],
  unreachable: ["无法连接服务器：{message}", "Cannot reach the server: {message}"],
  device_line: ["设备 {device} · 技术员 {technician}", "Device {device} · technician {technician}"],
  jobs_heading: ["我的工单", "My jobs"],
  no_index: [
    "还没有派给您的工单。派工后会自动出现。",
    "No job assigned to you yet. Jobs appear here once the desk assigns them.",
  ],
  no_jobs: ["工单列表为空。", "The job list is empty."],
  job_loading: ["正在获取工单…", "Fetching the job…"],
  job_unreadable: ["无法读取此工单", "This job cannot be read"],
  synced: ["已同步", "Synced"],
  unsynced: ["有未同步的修改", "Changes not yet synced"],
  never_synced: ["尚未与服务器同步", "Not yet synced with the server"],
  stored: ["已存于本机", "Kept on this device"],
  status_new: ["新建", "New"],
  status_assigned: ["已预约", "Appointment agreed"],
  status_on_site: ["在现场", "On site"],
  status_completed: ["待签发", "Completed, awaiting report"],
  status_signed: ["已签发", "Report signed"],
  status_refused: ["被退回", "Report refused"],
  status_cancelled: ["已取消", "Cancelled"],
  server_error: ["服务器拒绝了修改：{message}", "The server refused a change: {message}"],
  back: ["‹ 工单列表", "‹ Jobs"],
  fault: ["故障描述", "Reported fault"],
  site: ["地址", "Site"],
  arrival: ["到达现场", "Arrival on site"],
  arrive_button: ["我已到达", "I have arrived"],
  arrived_at: ["到达于 {time}", "Arrived at {time}"],
  fault_cause: ["故障原因", "Fault cause"],
  save: ["保存", "Save"],
  saved: ["已保存在本机", "Saved on this device"],
  check_out: ["离场报备", "Check-out with the desk"],
  check_out_note: ["报备说明", "Note to the desk"],
  check_out_button: ["离场报备", "Check out"],
  checked_out_at: ["已于 {time} 报备离场", "Checked out at {time}"],
  solution: ["处理方法", "Solution"],
  customer_opinion: ["客户意见", "Customer's opinion"],
  completion_heading: ["完工与客户签字", "Completion and the customer's signature"],
  request_completion: ["申请完工", "Request completion"],
  missing_heading: ["请客户签字之前，还缺以下各项：", "Before the customer is asked to sign, this is still missing:"],
  missing_fault_cause: ["记录故障原因", "Record the fault cause"],
  missing_solution: ["记录处理方法", "Record the solution"],
  missing_part_name: ["填写零件名称（第 {line} 行）", "Name the replaced part (line {line})"],
  missing_customer_opinion: ["记录客户意见", "Record the customer's opinion"],
  missing_check_out: ["离场前向服务台报备", "Check out with the service desk before leaving the site"],
  missing_training: ["记录对客户人员的培训：培训了谁、内容是什么", "Record the training of the customer's staff: who was trained and what it covered"],
  missing_trainee: ["至少写明一名受培训的客户人员", "Name at least one of the customer's staff who was trained"],
  missing_training_topics: ["写明培训内容", "Record what the training covered"],
  missing_acknowledgement: ["请客户签字确认", "Have the customer sign the report"],
  missing_signer_name: ["写明签字人姓名", "Record the name of the customer who signed"],
  missing_signature: ["客户签名是空的", "The customer's signature is empty"],
  invalid_survey_score: ["满意度评分须为 1 到 5 分", "Survey scores must be 1 to 5"],
  stale_acknowledgement: ["客户签字后工单又被修改：请重新请客户签字", "The job changed after the customer signed: take the signature again"],
  acknowledgement_mismatch: ["客户签字后工单又被修改：请重新请客户签字", "The job changed after the customer signed: take the signature again"],
  bad_device_signature: ["设备对客户确认的签名无法验证", "The device's signature of the acknowledgement does not verify"],
  unknown_device: ["网点不认识签字的设备", "The branch does not know the device that took the signature"],
  revoked_device: ["签字的设备已被停用", "The device that took the signature was revoked"],
  device_not_for_branch: ["签字的设备不属于本网点", "The device that took the signature is not this branch's"],
  attachment_missing: ["有附件（照片或签名图像）还没有上传到网点：请联网同步", "An attachment (a photo or the signature image) has not reached the branch: sync the device"],
  attachment_corrupt: ["网点收到的附件已损坏：请重新拍摄", "An attachment the branch holds is damaged: take it again"],
  expense_undecided: ["有差旅费报销还在等服务台审批", "A travel expense claim is waiting for the desk's decision"],
  unresolved_conflict: ["有两人同时修改、尚未解决的字段", "Fields two people changed at once are still unresolved"],
  possible_duplicate_part: ["零件可能被重复添加", "A part may have been added twice"],
  sign_heading: ["请客户阅读服务报告后签字", "The service report: for the customer to read, then sign"],
  report_language: ["报告语言", "Report language"],
  signature_label: ["客户签名（请用手指在框内签字）", "The customer's signature (sign in the box with a finger)"],
  clear_signature: ["重签", "Clear"],
  signer_name: ["签字人姓名", "Name of the person signing"],
  survey_heading: ["满意度调查（可不回答）", "Satisfaction survey (each question may be skipped)"],
  survey_attitude: ["服务态度", "Attitude"],
  survey_skill: ["技术水平", "Skill"],
  survey_punctuality: ["准时", "Punctuality"],
  survey_service_items: ["服务项目", "Service items"],
  not_answered: ["不回答", "Not answered"],
  suggestions: ["意见和建议", "Suggestions"],
  sign_button: ["确认并签字", "Confirm and sign"],
  signing: ["正在签字…", "Signing…"],
  cancel: ["返回", "Back"],
  need_signer_name: ["请写上签字人姓名。", "Write the name of the person signing."],
  need_signature: ["请客户在框内签名。", "Have the customer sign in the box."],
  signed_by: ["{name} 已于 {time} 签字确认", "Signed by {name} at {time}"],
  waiting_upload: ["签字已保存在本机；联网后上传签名图像并申请完工", "The signature is kept on this device; the signature image is uploaded and completion requested once online"],
  waiting_report: ["已申请完工，等待网点签发报告", "Completion requested: waiting for the branch to sign the report"],
  report_signed: ["网点已签发报告 {id}", "The branch signed report {id}"],
  report_refused: ["网点退回了报告，原因：", "The branch refused the report:"],
  request_again: ["处理后再次申请完工", "Request completion again"],
  kind_repair: ["维修", "Repair"],
  kind_installation: ["安装", "Installation"],
  kind_maintenance: ["保养", "Maintenance"],
  kind_follow_up: ["回访", "Follow-up"],
  // Two technicians on one job (issue 20): what a merge left in disagreement, and a revoked device.
  conflict_heading: ["记录有冲突：请选定保留哪一个", "Conflicting records: choose which to keep"],
  conflict_help: [
    "两人各自离线修改了同一工单，以下记录互相矛盾。请选定保留的内容，然后保存；客户签字前必须解决。",
    "Two people changed this job offline and these records disagree. Choose what to keep, then save; it must be resolved before the customer signs.",
  ],
  conflict_part: ["零件行 {line}", "Part line {line}"],
  conflict_part_desk: ["零件行的冲突请服务台解决", "The desk resolves a part line's conflict"],
  written_by: ["{by} 写于 {time}", "written by {by} at {time}"],
  written_by_someone: ["写入者不明", "writer unknown"],
  empty_value: ["（空）", "(empty)"],
  keep_chosen: ["保留所选内容", "Keep what is chosen"],
  field_fault_cause: ["故障原因", "Fault cause"],
  field_fault_category: ["故障类别", "Fault category"],
  field_solution: ["处理方法", "Solution"],
  field_labour_minutes: ["工时（分钟）", "Labour (minutes)"],
  field_labour_rate_per_hour: ["工时费率（分/小时）", "Labour rate (minor units per hour)"],
  field_part_number: ["零件编号", "Part number"],
  field_quantity: ["数量", "Quantity"],
  field_unit_price: ["单价（分）", "Unit price (minor units)"],
  field_warranty: ["保修", "Under warranty"],
  revoked_help: [
    "服务台已停用此设备：它不再连接服务器。本机上未同步的修改不会丢失，但需要服务台处理。请联系服务台重新登记。",
    "The desk revoked this device: it no longer connects to the server. Changes not yet synced stay on this device but need the desk. Ask the desk to enroll again.",
  ],
}


// The service report's words, as the PDF prints them (report-print/src/content.rs).
const REPORT = {
  r_title: ["售后服务报告单", "After-sales service report"],
  r_preview: ["预览：供客户签字前阅读", "Preview: for the customer to read before signing"],
  r_customer_branch: ["客户与服务网点", "Customer and branch"],
  r_branch: ["服务网点", "Branch"],
  r_job: ["工单号", "Job"],
  r_kind: ["服务类型", "Kind of job"],
  r_customer: ["客户", "Customer"],
  r_contact: ["联系人", "Contact"],
  r_site: ["服务地址", "Site address"],
  r_product: ["产品", "Product"],
  r_model: ["型号", "Model"],
  r_serial: ["序列号", "Serial number"],
  r_product_type: ["产品类别", "Product type"],
  r_purchased: ["购买日期", "Purchased"],
  r_warranty_end: ["保修截止", "Warranty until"],
  r_request_visit: ["报修与到场", "Request and visit"],
  r_received: ["报修时间", "Request received"],
  r_fault: ["故障描述", "Fault reported"],
  r_requested_arrival: ["要求到场", "Arrival requested by"],
  r_appointment: ["预约时间", "Appointment"],
  r_arrival: ["到场时间", "Arrival"],
  r_safety: ["安全交底", "Safety briefing"],
  r_check_out: ["离场报备", "Check-out"],
  r_diagnosis: ["故障与处理", "Diagnosis and work done"],
  r_fault_cause: ["故障原因", "Fault cause"],
  r_solution: ["处理方法", "Solution"],
  r_fault_category: ["故障类别", "Fault category"],
  r_training: ["培训", "Training"],
  r_parts_labour: ["零件、工时与差旅", "Parts, labour and travel"],
  r_parts_replaced: ["更换零件", "Parts replaced"],
  r_part: ["零件", "Part"],
  r_part_number: ["零件号 / 规格", "Number / spec."],
  r_qty: ["数量", "Qty"],
  r_unit_price: ["单价", "Unit price"],
  r_amount: ["金额", "Amount"],
  r_warranty: ["保修", "Warranty"],
  r_labour: ["工时", "Labour"],
  r_travel: ["差旅", "Travel"],
  r_charges: ["费用", "Charges"],
  r_parts_total: ["零件合计", "Parts"],
  r_parts_under_warranty: ["其中保修零件", "of which parts under warranty"],
  r_labour_fee: ["工时费", "Labour"],
  r_travel_fee: ["差旅费", "Travel"],
  r_cost: ["服务成本合计", "Cost of the service"],
  r_billing: ["收费方式", "Billing"],
  r_billing_warranty: ["保修", "warranty"],
  r_billing_billable: ["有偿服务", "billable"],
  r_customer_pays: ["客户应付", "Customer pays"],
  r_invoice: ["发票号", "Invoice"],
  r_handover: ["产品交接", "Hand-over"],
  r_no_handover: ["无（现场完成）", "none (done on site)"],
  r_items: ["带回物品", "Items taken back"],
  r_reason: ["原因", "Reason"],
  r_attachments: ["附件（照片与收据）", "Attachments (photos and receipts)"],
  r_opinion: ["客户意见", "Customer's opinion"],
  r_none: ["无", "none"],
  r_not_recorded: ["未记录", "not recorded"],
  r_yes: ["是", "yes"],
  r_no: ["否", "no"],
  r_minutes: ["{minutes} 分钟 × {rate}/小时", "{minutes} min × {rate}/h"],
  r_km: ["{km} 公里", "{km} km"],
  r_kind_repair: ["维修", "repair"],
  r_kind_installation: ["安装调试", "installation and commissioning"],
  r_kind_maintenance: ["保养", "maintenance"],
  r_kind_follow_up: ["回访", "follow-up"],
  r_attachment_before: ["维修前", "before"],
  r_attachment_after: ["维修后", "after"],
  r_attachment_receipt: ["收据", "receipt"],
  r_attachment_signature: ["签名图像", "signature"],
}

const KEY = "fieldsync.lang"

/** `zh` or `en`: the technician's choice, else the browser's language. */
export function language() {
  const chosen = localStorage.getItem(KEY)
  if (chosen === "zh" || chosen === "en") return chosen
  const browser = (navigator.languages?.[0] ?? navigator.language ?? "zh").toLowerCase()
  return browser.startsWith("zh") ? "zh" : "en"
}

export function setLanguage(lang) {
  localStorage.setItem(KEY, lang)
}

/** Whether there is a text for `key`. */
export function has(key) {
  return key in TEXT
}

/** The text for `key` in the current language, with `{name}` filled from `vars`. */
export function t(key, vars = {}) {
  return tIn(language(), key, vars)
}

/** The text for `key` in `lang` (`zh` or `en`): the service report is shown in the
 *  customer's language, whatever the technician reads the app in. */
export function tIn(lang, key, vars = {}) {
  const pair = TEXT[key] ?? REPORT[key]
  if (!pair) return key
  const text = pair[lang === "zh" ? 0 : 1]
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""))
}
